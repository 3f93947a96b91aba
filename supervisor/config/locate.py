"""Finding the stack file: `supervise.toml`, else `[tool.supervise]` in `pyproject.toml`,
else a `Procfile`, in the current directory or the nearest parent that has one — up to
the repository root (a directory with `.git`) or the filesystem root, as git and docker
compose search. Standard library only: client commands use it too."""

from __future__ import annotations

import tomllib
from pathlib import Path

STACK_FILE = "supervise.toml"
PYPROJECT = "pyproject.toml"
PROCFILE = "Procfile"


def stack_file_in(directory: Path) -> Path | None:
    """The stack file of `directory` itself, or None."""
    candidate = directory / STACK_FILE
    if candidate.is_file():
        return candidate
    pyproject = directory / PYPROJECT
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text()).get("tool", {})
            if isinstance(tool, dict) and "supervise" in tool:
                return pyproject
        except Exception:
            return pyproject  # its loader reports what is wrong with it
    procfile = directory / PROCFILE
    if procfile.is_file():
        return procfile
    return None


def find_stack_file(start: Path) -> Path | None:
    """The nearest stack file from `start` upwards, or None."""
    for directory in [start, *start.parents]:
        found = stack_file_in(directory)
        if found is not None:
            return found
        if (directory / ".git").exists():
            return None  # the repository's root: a stack above it is someone else's
    return None
