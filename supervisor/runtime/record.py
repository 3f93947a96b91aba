"""One unit's record in the running stack: its plan value, its status, and what was
observed of it (output, the latest notify STATUS=, its hand-off file, its MCP tools,
probe latencies, and a short history of events and notes for `why`).

Invariant: `status` is written only by the unit's own task (`runtime.unit`); `unit` (the
plan value) is replaced only by a reload, and the task reads it afresh at each decision,
so a reloaded policy applies from the next decision on.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from supervisor.control.plane import LogRecord
from supervisor.observe import Histogram, Note, ToolList, ToolsEvent
from supervisor.osproc.spawn import Child
from supervisor.plan import Rendering, Unit
from supervisor.state import Blocker, Event, State, Status

LOG_LINES = 2000  # recent output kept per unit for `logs` (the stack's `log_lines`)
HISTORY = 100  # recent events and notes kept per unit for `why`
NOT_STARTED = Blocker("not started yet")


@dataclass(eq=False)
class UnitRecord:
    unit: Unit
    env_file: Path  # the unit's SUPERVISE_ENV hand-off file, private to it
    notify_path: Path | None = None  # its NOTIFY_SOCKET, with `ready = { notify = true }`
    status: Status = field(default_factory=lambda: Status(State.PENDING, blocker=NOT_STARTED))
    rendering: Rendering | None = None  # what the current or last instance was started with
    child: Child | None = None  # the live instance's leader
    status_text: str = ""  # the latest STATUS= from sd_notify
    last_stderr: str = ""
    logs: deque[LogRecord] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    # Set (and replaced) to wake the unit's gate: a dependency or a model key changed.
    wake: anyio.Event = field(default_factory=anyio.Event)
    tools: ToolList | None = None  # what its mcp probe listed when it last became ready
    probes: dict[str, Histogram] = field(default_factory=dict)  # "ready"/"live" latencies
    probe_error: str = ""  # the latest failed probe attempt's error, "" once one passed
    live_failures: int = 0  # consecutive failed liveness attempts of the live instance
    next_start: float | None = None  # wall clock of the start a backoff waits for
    history: deque[Event | Note | ToolsEvent] = field(default_factory=lambda: deque(maxlen=HISTORY))
    slot: int = 0  # which of two hand-off files the instance has (see `take_other_slot`)

    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def model(self) -> str | None:
        return self.unit.model

    @property
    def marker(self) -> bytes:
        """The environment entry that every process of this unit carries."""
        return f"SUPERVISE_ENV={self.env_file}".encode()

    def variables(self, socket_path: str) -> dict[str, str]:
        """The SUPERVISE_* variables (and NOTIFY_SOCKET) the unit's processes receive."""
        variables = {
            "SUPERVISE_UNIT": self.name,
            "SUPERVISE_ENV": str(self.env_file),
            "SUPERVISE_SOCKET": socket_path,
        }
        if self.model is not None:
            variables["SUPERVISE_MODEL"] = self.model
        if self.notify_path is not None:
            variables["NOTIFY_SOCKET"] = str(self.notify_path)
        return variables

    def histogram(self, probe: str, kind: str) -> Histogram:
        """The latency histogram of its `probe` ("ready" or "live"); a new one when the
        probe's kind changed with a reload."""
        found = self.probes.get(probe)
        if found is None or found.kind != kind:
            found = self.probes[probe] = Histogram(probe, kind)
        return found

    def poke(self) -> None:
        """Wake the unit's gate to look again."""
        self.wake.set()
        self.wake = anyio.Event()

    def take_other_slot(self) -> None:
        """Overlap: the next instance runs beside the current one, so it gets the other
        hand-off file (and notify socket). Its marker differs, and stopping either
        instance's tree never reaches the other."""
        self.slot = 1 - self.slot
        self.env_file = slotted(self.env_file, self.slot)
        if self.notify_path is not None:
            self.notify_path = slotted(self.notify_path, self.slot)

    def reset_env_file(self) -> None:
        """A new, empty, private hand-off file for the next instance (0600). Whatever the
        last instance left there (a FIFO, a symlink, a directory) is removed, never opened."""
        path = self.env_file
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                import shutil  # only for a directory where the file should be

                shutil.rmtree(path)
            else:
                path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)

    def __repr__(self) -> str:
        return f"<{self.name} {self.status.describe()}>"


def slotted(path: Path, slot: int) -> Path:
    """`held.env` for slot 0, `held.1.env` for slot 1 (a process name has no dot)."""
    stem = path.name.split(".", 1)[0]
    suffix = path.name.rsplit(".", 1)[1]
    return path.with_name(f"{stem}.{suffix}" if slot == 0 else f"{stem}.1.{suffix}")
