"""Running `supervise exec` / `supervise wait` as real processes, through
`python -m supervisor.export.cli`, and reading their output lines with a deadline."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path

PY = sys.executable
DEADLINE = 30.0  # the longest any shim test waits for something it expects


def shim(
    *args: str, env: dict[str, str] | None = None, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    """Run `supervise ARGS...` to completion."""
    return subprocess.run(
        [PY, "-m", "supervisor.export.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_shim(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "supervisor.export.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def read_line(stream: object, what: str, timeout: float = DEADLINE) -> str:
    """The next line of a child's pipe, or AssertionError naming what was awaited."""
    assert hasattr(stream, "fileno") and hasattr(stream, "readline")
    with selectors.DefaultSelector() as selector:
        selector.register(stream.fileno(), selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"want {what}, got no line after {timeout:g} s")
    line: str = stream.readline()
    return line.rstrip("\n")


def finish(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def child(code: str) -> list[str]:
    """argv of a Python child running `code`."""
    return [PY, "-c", code]


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
