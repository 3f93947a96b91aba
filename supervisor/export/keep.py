"""Exporting again into a directory that holds an earlier export: nothing the user wrote
is lost.

Invariants:
- A key file that already exists keeps every value the user filled in: a line the new
  export writes as a comment to fill in (a secret, a key nothing provides) takes the
  file's value. A line the export writes with a value comes from the stack (its value
  wins, and the change is said). A key the file sets that the stack no longer names is
  kept, at the end, and said.
- An existing key file that cannot be read in the SUPERVISE_ENV dialect stops the export
  before anything is written, naming the file and line.
- Generated files of an earlier export that this one does not write (a model or process
  removed since) are left in place and named, never deleted: the directory is the user's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.config.spec import is_env_key
from supervisor.export.common import FILL_IN, OutputFile

GENERATED_MARK = "supervise export"  # in the first lines of every generated file
GENERATED_SUFFIXES = (".yaml", ".env", ".service", ".socket", ".target", ".path", ".conf")
HEAD_BYTES = 512
KEPT_HEADER = "# Kept from the earlier file: the stack no longer names these keys."


@dataclass
class Carried:
    """What merging with the files already there kept, replaced and left alone."""

    kept: dict[str, list[str]] = field(default_factory=dict)  # file → keys filled in
    replaced: dict[str, list[str]] = field(default_factory=dict)  # file → stack wins
    unnamed: dict[str, list[str]] = field(default_factory=dict)  # file → kept at the end
    stale: list[str] = field(default_factory=list)  # earlier generated files not rewritten

    def lines(self) -> list[str]:
        said = []
        for name, keys in sorted(self.kept.items()):
            said.append(f"  kept: {name}: the values you filled in for {', '.join(keys)}")
        for name, keys in sorted(self.replaced.items()):
            keys_text = ", ".join(keys)
            said.append(f"  replaced: {name}: {keys_text}: the stack's value replaces the file's")
        for name, keys in sorted(self.unnamed.items()):
            said.append(
                f"  kept: {name}: {', '.join(keys)}, which the stack no longer names (at the end)"
            )
        for name in self.stale:
            said.append(f"  left in place: {name}, from an earlier export (delete it if unused)")
        return ["over the earlier export:", *said] if said else []


def merge_existing(
    directory: Path, files: Mapping[str, OutputFile]
) -> tuple[dict[str, OutputFile], Carried]:
    """`files` with every existing key file's filled-in values carried over.

    Raises:
        KeyFileError: an existing key file is unreadable or has a line the rules refuse.
    """
    from supervisor.shims.environment import read_key_file

    carried = Carried()
    merged = dict(files)
    for name, output in files.items():
        path = directory / name
        if not output.private or not (path.exists() or path.is_symlink()):
            continue
        old = read_key_file(path)
        merged[name] = OutputFile(_merge(name, output.text, old, carried), private=True)
    carried.stale = _stale(directory, files)
    return merged, carried


def _merge(name: str, text: str, old: Mapping[str, str], carried: Carried) -> str:
    lines, named = [], set()
    for line in text.splitlines():
        if line.startswith("# ") and FILL_IN in line:  # a key to fill in (see `key_file`)
            key = line[2:].partition(FILL_IN)[0]
            named.add(key)
            if key in old:
                line = f"{key}={old[key]}"
                carried.kept.setdefault(name, []).append(key)
        elif is_env_key(key := line.partition("=")[0]):  # a key the stack sets
            named.add(key)
            if key in old and f"{key}={old[key]}" != line:
                carried.replaced.setdefault(name, []).append(key)
        lines.append(line)
    rest = [key for key in old if key not in named]
    if rest:
        lines += ["", KEPT_HEADER, *(f"{key}={old[key]}" for key in rest)]
        carried.unnamed[name] = rest
    return "\n".join(lines) + "\n"


def _stale(directory: Path, files: Mapping[str, OutputFile]) -> list[str]:
    """Files under `directory` that an earlier export generated and this one does not
    write; hidden directories (`-o .`: the repository's .git, .venv) are not entered."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(names):
            path = Path(root, file)
            name = str(path.relative_to(directory))
            if name in files or file.startswith(".") or not file.endswith(GENERATED_SUFFIXES):
                continue
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with open(path, "rb") as handle:
                    head = handle.read(HEAD_BYTES)
            except OSError:
                continue
            if GENERATED_MARK.encode() in b"\n".join(head.splitlines()[:3]):
                found.append(name)
    return found
