"""One unit's runtime record and the pieces of one instance's life that need no view of
the rest of the stack: draining output, the notify socket, the published-keys file.

Invariant: a unit has at most one live instance; its whole life runs in one task owned
by the supervisor (`UnitRuntime.scope`), and `done` is set when that task has ended and
the unit's process tree is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

from supervisor.osproc.spawn import Child
from supervisor.plan import Rendering, Unit
from supervisor.policy import FailureWindow
from supervisor.state import Status

LOG_LINES = 500  # recent output kept per unit for `logs`
MAX_LINE = 16 * 1024  # longer lines are split, so one unit cannot grow memory unbounded
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class LogRecord:
    ts: float
    unit: str
    stream: str
    line: str


@dataclass
class Outcome:
    """How an instance ended, beyond its exit code."""

    started_at: float
    probe_error: str = ""  # not ready in time: a failed start
    fatal: str = ""  # cannot work on a retry (spawn error, bad publish): fail at once


@dataclass(eq=False)
class UnitRuntime:
    unit: Unit
    env_file: Path
    notify_path: Path | None
    failures: FailureWindow
    status: Status = field(default_factory=Status)
    rendering: Rendering | None = None
    child: Child | None = None
    restarts: int = 0
    generation: int = 0  # instances spawned so far; tells a restarted instance apart
    started_at: float | None = None
    ready_at: float | None = None
    user_stopped: bool = False
    status_text: str = ""  # the latest STATUS= from sd_notify
    last_stderr: str = ""
    logs: deque[LogRecord] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.done.set()  # no task yet

    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def marker(self) -> bytes:
        """The environment line that every process of this unit inherits."""
        return f"SUPERVISE_ENV={self.env_file}".encode()

    @property
    def has_task(self) -> bool:
        return not self.done.is_set()

    def __repr__(self) -> str:
        return f"<{self.name} {self.status.describe()}>"


async def drain(fd: int, on_line: Callable[[str], None], *, max_line: int = MAX_LINE) -> None:
    """Read `fd` to end-of-file, calling `on_line` per line; never leaves a pipe unread.

    A final line without a newline is delivered at end-of-file; a line longer than
    `max_line` is delivered in pieces.
    """
    buffer = bytearray()
    while True:
        try:
            await anyio.wait_readable(fd)
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not data:
            break
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            on_line(_text(buffer[start:end]))
            start = end + 1
        del buffer[:start]
        while len(buffer) >= max_line:
            on_line(_text(buffer[:max_line]))
            del buffer[:max_line]
    if buffer:
        on_line(_text(buffer))


def _text(raw: bytes | bytearray) -> str:
    return bytes(raw).rstrip(b"\r").decode(errors="replace")


def line_handler(
    unit: UnitRuntime,
    stream: str,
    emit: Callable[[LogRecord], None],
    log_pattern: re.Pattern[str] | None,
    log_matched: anyio.Event,
) -> Callable[[str], None]:
    def on_line(text: str) -> None:
        record = LogRecord(time.time(), unit.name, stream, text)
        unit.logs.append(record)
        if stream == "stderr" and text.strip():
            unit.last_stderr = text.strip()
        if log_pattern is not None and not log_matched.is_set() and log_pattern.search(text):
            log_matched.set()
        emit(record)

    return on_line


async def serve_notify(
    sock: anyio.abc.UNIXDatagramSocket, unit: UnitRuntime, notified: anyio.Event
) -> None:
    """sd_notify datagrams: READY=1 makes the unit ready, STATUS= is shown in status."""
    async for data, _ in sock:
        for line in data.decode(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                notified.set()
            elif key == "STATUS":
                unit.status_text = value


def reset_env_file(path: Path) -> None:
    """A new, empty, private hand-off file for the next instance (0600). Whatever the last
    instance left there (a FIFO, a symlink, a directory) is removed, never opened."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
