"""A cgroup around the test process: the second half of the orphan net.

The environment marker (``conftest``) finds what a test started unless a process cleared
its environment (``env -i``) or overwrote it. Cgroup membership cannot be shed that way:
a child is born in its parent's cgroup and stays there through ``setsid``, a double fork
and re-parenting to init. So the test process moves itself into a cgroup of its own
(cgroup v2, with no controller: membership only) and, at each teardown, every member it
did not have at the test's start is something the test left behind — unless a process
that was there before (a module's browser) started it.

Where no cgroup v2 hierarchy is writable (an unprivileged user, a read-only mount) the
tracker is off and the marker alone stands; the run's header says which.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            if rest.split(" ", 1)[0] == "cgroup2":
                return Path(fields.split()[4])
    return None


def _own_cgroup() -> str | None:
    with open("/proc/self/cgroup") as groups:
        for line in groups:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def home() -> Path | None:
    """The cgroup v2 directory this process is in, if it can make one below it."""
    mount, own = _cgroup2_mount(), _own_cgroup()
    if mount is None or own is None:
        return None
    directory = mount / own.lstrip("/")
    return directory if os.access(directory, os.W_OK) else None


def parent_of(pid: int) -> int | None:
    """The parent of a live process; None once it is gone."""
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def is_zombie(pid: int) -> bool:
    """A process that ended (reaped or not)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


class Tracker:
    """This process's own cgroup; everything it starts from now on is a member."""

    def __init__(self, directory: Path, origin: Path) -> None:
        self.directory, self.origin = directory, origin

    @classmethod
    def enter(cls) -> Tracker | None:
        origin = home()
        if origin is None:
            return None
        directory = origin / f"supervise-tests-{os.getpid()}"
        try:
            directory.mkdir()
            (directory / "cgroup.procs").write_text(f"{os.getpid()}\n")
        except OSError:
            with contextlib.suppress(OSError):
                directory.rmdir()
            return None
        return cls(directory, origin)

    def members(self) -> set[int]:
        """Live members other than this process."""
        pids = map(int, (self.directory / "cgroup.procs").read_text().split())
        return {pid for pid in pids if pid != os.getpid() and not is_zombie(pid)}

    def left_behind(self, before: set[int]) -> set[int]:
        """Members that were not there at the test's start and that no process that was
        there (other than this one) started: what the test itself left behind."""
        keepers = before - {os.getpid()}
        found = set()
        for pid in self.members() - before:
            ancestor = parent_of(pid)
            while ancestor is not None and ancestor > 1 and ancestor not in keepers:
                ancestor = parent_of(ancestor)
            if ancestor not in keepers:
                found.add(pid)
        return found

    def leave(self) -> None:
        """Back to the cgroup this process came from; the empty cgroup is removed."""
        (self.origin / "cgroup.procs").write_text(f"{os.getpid()}\n")
        with contextlib.suppress(OSError):  # not empty: the session's last net reported it
            self.directory.rmdir()
