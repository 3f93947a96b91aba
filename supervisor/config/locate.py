"""Finding the stack file: `supervise.toml`, else `[tool.supervise]` in `pyproject.toml`,
else a `Procfile`, in the current directory or the nearest parent that has one — up to
the repository root (a directory with `.git`) or the filesystem root, as git and docker
compose search. Standard library only, and no pathlib: client commands use it too."""

from __future__ import annotations

import os

STACK_FILE = "supervise.toml"
PYPROJECT = "pyproject.toml"
PROCFILE = "Procfile"


def stack_file_in(directory: str) -> str | None:
    """The stack file of `directory` itself, or None."""
    candidate = os.path.join(directory, STACK_FILE)
    if os.path.isfile(candidate):
        return candidate
    pyproject = os.path.join(directory, PYPROJECT)
    if os.path.isfile(pyproject):
        try:
            with open(pyproject, encoding="utf-8") as handle:
                text = handle.read()
            if "supervise" not in text:  # most pyprojects: no TOML parse (8 ms a client)
                text = ""
            import tomllib

            tool = tomllib.loads(text).get("tool", {})
            if isinstance(tool, dict) and "supervise" in tool:
                return pyproject
        except Exception:
            return pyproject  # its loader reports what is wrong with it
    procfile = os.path.join(directory, PROCFILE)
    if os.path.isfile(procfile):
        return procfile
    return None


def find_stack_file(start: str | os.PathLike[str]) -> str | None:
    """The nearest stack file from `start` upwards, or None."""
    directory = os.path.abspath(start)
    while True:
        found = stack_file_in(directory)
        if found is not None:
            return found
        if os.path.exists(os.path.join(directory, ".git")):
            return None  # the repository's root: a stack above it is someone else's
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
