"""What `run` prints. `Printer` receives typed messages (lines, events, notes) and
prints them; it knows nothing of processes (honcho's printer is the model).

It writes from a thread of its own through a bounded buffer, so a blocked stdout never
blocks the event loop and therefore never blocks a unit: when the buffer is full the
oldest lines are dropped and a line says how many. Everything is masked by the
`Redactor` it is given before it is queued. A `tee` (the log files) gets every line and
event too, and masks them with the same redactor.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol, TextIO

from supervisor.output.format import (
    SUPERVISOR_NAME,
    AnyEvent,
    format_event,
    format_line,
    masked,
)
from supervisor.secrets import Redactor

BUFFER_LINES = 10_000  # lines waiting for a slow stdout before the oldest are dropped


def use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Tee(Protocol):
    """Something that gets what is printed as well, and must not block either."""

    def line(self, ts: float, unit: str, stream: str, text: str) -> None: ...

    def event(self, event: AnyEvent) -> None: ...

    def close(self, timeout: float = 2.0) -> None: ...


class Printer:
    """Prints lines and events without ever blocking the caller."""

    def __init__(
        self, fmt: str = "text", stream: TextIO | None = None, redactor: Redactor | None = None
    ) -> None:
        self.fmt = fmt
        self.redactor = redactor or Redactor()
        self.stream = stream or sys.stdout
        self.color = fmt == "text" and use_color(self.stream)
        self.width = len(SUPERVISOR_NAME)
        self._pending: deque[str] = deque()
        self._dropped = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="printer", daemon=True)
        self._thread.start()
        self.tee: Tee | None = None

    def set_units(self, names: Iterable[str]) -> None:
        self.width = max([len(SUPERVISOR_NAME), *(len(n) for n in names)])

    def line(self, unit: str, stream: str, text: str, ts: float | None = None) -> None:
        ts = ts or time.time()
        if self.tee is not None:
            self.tee.line(ts, unit, stream, text)
        text = self.redactor.mask(text)
        self._put(
            format_line(
                ts,
                unit,
                stream,
                text,
                fmt=self.fmt,
                width=self.width,
                color=self.color,
            )
        )

    def event(self, event: AnyEvent) -> None:
        if self.tee is not None:
            self.tee.event(event)
        shown = masked(event, self.redactor.mask)
        line = format_event(shown, fmt=self.fmt, width=self.width, color=self.color)
        self._put(self.redactor.mask(line))

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
        if self.tee is not None:
            self.tee.close(timeout)
