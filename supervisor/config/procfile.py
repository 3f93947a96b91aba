"""Procfiles, honcho-compatible, but strict: a line that is not a process, a comment or
blank is an error naming the line (honcho drops it silently)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from supervisor.config.spec import Process
from supervisor.errors import Problem

_LINE = re.compile(r"([A-Za-z0-9_-]+):\s*(.+)")
BASE_PORT = 5000  # honcho's and foreman's first PORT when none is set
PORT_STEP = 100


def renumber_ports(
    selected: Mapping[str, Process], everything: Mapping[str, Process]
) -> dict[str, Process]:
    """The selected processes with PORT = base + 100 × their index among themselves."""
    first = next(iter(everything.values()), None)
    base = first.port if first is not None and isinstance(first.port, int) else BASE_PORT
    return {
        name: replace(process, port=base + PORT_STEP * index)
        for index, (name, process) in enumerate(selected.items())
    }


def parse_procfile(text: str, file: str, base_port: int) -> tuple[dict[str, Any], list[Problem]]:
    """Turn a Procfile into a stack table.

    Every process runs through `/bin/sh -c`, gets PORT = base + 100 × its index, and a
    non-zero exit stops the stack (honcho's behaviour) while an exit 0 does not.

    Returns:
        The stack as the dict a `supervise.toml` would have given, and the problems found.
    """
    processes: dict[str, Any] = {}
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(
                Problem(file, f"line {number}", f"expected 'name: command', got {raw!r}")
            )
            continue
        name, command = match.groups()
        if name in processes:
            problems.append(Problem(file, f"line {number}", f"duplicate process name {name!r}"))
            continue
        processes[name] = {
            "command": command,
            "shell": True,
            "port": base_port + PORT_STEP * len(processes),
            "restart": "never",
        }
    if not processes and not problems:
        problems.append(Problem(file, "", "no processes"))
    return {"processes": processes}, problems
