"""What `run` prints: unit lines and supervisor events, as text or JSON.

Formatting is pure (`format_line`, `format_event`). `Printer` writes from a thread of its
own through a bounded buffer, so a blocked stdout never blocks the event loop and
therefore never blocks a unit: when the buffer is full the oldest lines are dropped and
a line says how many.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TextIO

from supervisor.secrets import MIN_MASKED_LENGTH, mask
from supervisor.state import Event

SUPERVISOR_NAME = "supervise"
BUFFER_LINES = 10_000  # lines waiting for a slow stdout before the oldest are dropped
_COLORS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_RESET = "\x1b[0m"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def color_of(unit: str) -> int:
    return _COLORS[sum(unit.encode()) % len(_COLORS)]


def format_line(
    ts: float, unit: str, stream: str, line: str, *, fmt: str, width: int, color: bool
) -> str:
    if fmt == "json":
        return json.dumps({"ts": ts, "unit": unit, "stream": stream, "line": line})
    prefix = f"{clock(ts)} {unit:<{width}} |"
    if color:
        prefix = f"\x1b[{color_of(unit)}m{prefix}{_RESET}"
    return f"{prefix} {line}"


def format_event(event: Event, *, fmt: str, width: int, color: bool) -> str:
    new = event.new
    if fmt == "json":
        record: dict[str, object] = {
            "ts": event.ts,
            "unit": event.unit,
            "event": str(new.state),
            "ready": new.ready,
        }
        if new.pid is not None:
            record["pid"] = new.pid
        if new.exit_code is not None:
            record["exit_code"] = new.exit_code
        if new.reason:
            record["reason"] = new.reason
        return json.dumps(record)
    text = f"{event.unit} {new.describe()}"
    return format_line(event.ts, SUPERVISOR_NAME, "event", text, fmt=fmt, width=width, color=color)


def use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Printer:
    """Prints lines and events without ever blocking the caller."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self.color = fmt == "text" and use_color(self.stream)
        self.width = len(SUPERVISOR_NAME)
        self.secrets: list[str] = []
        self._pending: deque[str] = deque()
        self._dropped = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="printer", daemon=True)
        self._thread.start()

    def set_units(self, names: Iterable[str]) -> None:
        self.width = max([len(SUPERVISOR_NAME), *(len(n) for n in names)])

    def set_secrets(self, values: Iterable[str]) -> None:
        self.secrets = sorted(
            {v for v in values if len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True
        )

    def line(self, unit: str, stream: str, text: str, ts: float | None = None) -> None:
        text = mask(text, self.secrets)
        self._put(
            format_line(
                ts or time.time(),
                unit,
                stream,
                text,
                fmt=self.fmt,
                width=self.width,
                color=self.color,
            )
        )

    def event(self, event: Event) -> None:
        line = format_event(event, fmt=self.fmt, width=self.width, color=self.color)
        self._put(mask(line, self.secrets))

    def note(self, text: str) -> None:
        """A line from the supervisor itself."""
        self.line(SUPERVISOR_NAME, "event", text)

    def _put(self, text: str) -> None:
        with self._cond:
            if len(self._pending) >= BUFFER_LINES:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append(text)
            self._cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch = list(self._pending)
                self._pending.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch.insert(
                    0,
                    format_line(
                        time.time(),
                        SUPERVISOR_NAME,
                        "event",
                        f"output too slow: dropped {dropped} line(s)",
                        fmt=self.fmt,
                        width=self.width,
                        color=self.color,
                    ),
                )
            try:
                self.stream.write("\n".join(batch) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                continue  # a closed stdout must not stop supervision

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is buffered (bounded: a stuck stdout must not hang the exit)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
