"""Log files: each unit's output, and the supervisor's own lines and events, written as
printed to size-rotated files (`[supervise] log_dir`, per process `log`).

Invariants:
- Never blocking a unit: callers only append to a bounded buffer; a thread of its own
  opens, writes and rotates. When the disk is slower than the units, the oldest buffered
  lines are dropped and the file says how many.
- Never unbounded: a file is rotated before a line would take it past `max_size` (a
  single line longer than that gets a file of its own), and only `backups` rotated files
  are kept (`NAME.1` the newest). Rotation happens between lines: no line is split or lost
  in the current file.
- Masked: every text is passed through the `Redactor` before it is buffered, as stdout is.
- A file that cannot be opened or written is reported once and skipped; supervision
  never stops for a log file.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from supervisor.config.interpolate import interpolate
from supervisor.config.load import LoadedStack
from supervisor.config.spec import DEFAULT_LOG_BACKUPS, DEFAULT_LOG_MAX_SIZE
from supervisor.output.format import AnyEvent, file_event, file_line, masked
from supervisor.plan import Unit
from supervisor.secrets import Redactor

BUFFER_LINES = 10_000  # lines waiting for a slow disk before the oldest are dropped
FILE_MODE = 0o640  # unit output may matter to others in the group (a log shipper), not to all
DIR_MODE = 0o750
EVENTS_FILE = "supervise.log"


@dataclass(frozen=True)
class Routes:
    """Where lines go: the supervisor's own file, and each unit's (absent: not logged)."""

    events: Path | None = None
    units: Mapping[str, Path] = field(default_factory=dict)
    max_size: int = DEFAULT_LOG_MAX_SIZE
    backups: int = DEFAULT_LOG_BACKUPS


def log_routes(loaded: LoadedStack, units: Iterable[Unit]) -> Routes:
    """Where each unit's output is logged: its `log` path (relative to `log_dir`, else to
    the stack file), else `log_dir/[MODEL/]PROCESS.log`; the supervisor's own lines go to
    `log_dir/supervise.log`."""
    settings = loaded.stack.supervise
    log_dir = loaded.resolve_path(settings.log_dir) if settings.log_dir else None
    paths: dict[str, Path] = {}
    for unit in units:
        log = unit.spec.log
        if log is False or (log is None and log_dir is None):
            continue
        if log is None:
            paths[unit.name] = Path(*filter(None, [unit.model, f"{unit.process}.log"]))
        else:
            names = {"process": unit.process, "model": unit.model}
            paths[unit.name] = Path(interpolate(log, names.get))  # names checked at load
        paths[unit.name] = (log_dir or loaded.base_dir) / paths[unit.name]
    return Routes(
        log_dir / EVENTS_FILE if log_dir is not None else None,
        paths,
        settings.log_max_size,
        settings.log_backups,
    )


class RotatingFile:
    """One log file, appended to, rotated by size. Used by the writer thread only."""

    def __init__(self, path: Path, max_size: int, backups: int) -> None:
        self.path, self.max_size, self.backups = path, max_size, backups
        _make_dirs(path.parent)
        self.file = self._open()
        self.size = os.fstat(self.file.fileno()).st_size

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        return os.fdopen(fd, "ab")

    def write(self, lines: list[str]) -> None:
        for line in lines:
            data = (line + "\n").encode(errors="replace")
            if self.size and self.size + len(data) > self.max_size:
                self.rotate()
            self.file.write(data)
            self.size += len(data)
        self.file.flush()

    def rotate(self) -> None:
        """NAME → NAME.1 → … → NAME.<backups>; the oldest falls off (no backups: the file
        starts afresh), and so do backups numbered above `backups` (it was lowered)."""
        self.file.close()
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        prefix = f"{self.path.name}."
        with os.scandir(self.path.parent) as entries:
            for entry in entries:
                number = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
                if number.isdigit() and int(number) > self.backups:
                    Path(entry.path).unlink(missing_ok=True)
        self.file = self._open()
        self.size = 0

    def close(self) -> None:
        self.file.close()


def _make_dirs(directory: Path) -> None:
    """`directory` and any missing parent, each `DIR_MODE` (`mkdir(parents=True)` gives
    the parents the default mode)."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    directory.mkdir(mode=DIR_MODE, exist_ok=True)


class LogFiles:
    """Masks, buffers and writes lines to their files, from a thread of its own."""

    def __init__(
        self,
        redactor: Redactor,
        fmt: str = "text",
        warn: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.redactor, self.fmt, self.warn = redactor, fmt, warn
        self.routes = Routes()
        self._pending: deque[tuple[Path, str]] = deque()
        self._dropped: dict[Path, int] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._files: dict[Path, RotatingFile] = {}
        self._broken: set[Path] = set()
        self._thread: threading.Thread | None = None

    def configure(self, routes: Routes) -> None:
        """Route lines from now on (a reload may change them)."""
        with self._cond:
            self.routes = routes
            self._cond.notify()

    def line(self, ts: float, unit: str, stream: str, text: str) -> None:
        """A unit's output line, or (stream "event") a note of the supervisor's."""
        routes = self.routes
        path = routes.events if stream == "event" else routes.units.get(unit)
        if path is not None:
            self._put(path, file_line(ts, unit, stream, self.redactor.mask(text), fmt=self.fmt))

    def event(self, event: AnyEvent) -> None:
        path = self.routes.events
        if path is not None:
            shown = masked(event, self.redactor.mask)
            self._put(path, self.redactor.mask(file_event(shown, fmt=self.fmt)))

    def _put(self, path: Path, text: str) -> None:
        with self._cond:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_loop, name="logfiles")
                self._thread.daemon = True
                self._thread.start()
            if len(self._pending) >= BUFFER_LINES:
                lost, _ = self._pending.popleft()
                self._dropped[lost] = self._dropped.get(lost, 0) + 1
            self._pending.append((path, text))
            self._cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    break
                batch = list(self._pending)
                self._pending.clear()
                dropped, self._dropped = self._dropped, {}
                routes = self.routes
            by_path: dict[Path, list[str]] = {}
            for path, count in dropped.items():
                note = f"[supervise] the disk was too slow: dropped {count} line(s)"
                by_path.setdefault(path, []).append(note)
            for path, text in batch:
                by_path.setdefault(path, []).append(text)
            for path, lines in by_path.items():
                self._write(path, lines, routes)
            self._close_unrouted(routes)
        for file in self._files.values():
            file.close()

    def _write(self, path: Path, lines: list[str], routes: Routes) -> None:
        if path in self._broken:
            return
        try:
            file = self._files.get(path)
            if file is None:
                file = self._files[path] = RotatingFile(path, routes.max_size, routes.backups)
            file.max_size, file.backups = routes.max_size, routes.backups
            file.write(lines)
        except OSError as exc:
            self._broken.add(path)
            self._files.pop(path, None)
            self.warn(f"cannot write log file {path}: {exc.strerror or exc}; not logging to it")

    def _close_unrouted(self, routes: Routes) -> None:
        """Files no route leads to any more (a unit removed by a reload) are closed."""
        wanted = {routes.events, *routes.units.values()}
        for path in [p for p in self._files if p not in wanted]:
            self._files.pop(path).close()

    def close(self, timeout: float = 2.0) -> None:
        """Write what is buffered (bounded: a stuck disk must not hang the exit)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
