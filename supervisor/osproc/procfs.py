"""The one reader of /proc/<pid>/stat and /proc/<pid>/environ.

Standard library only: the process tree, the status's cpu and memory and the control
socket's caller identification read /proc through it.

A `Proc` is compared by (pid, start time), so a pid that was reused by another process
is never mistaken for the one seen before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

STAT_MAX = 4096  # /proc/<pid>/stat is one line of 52 numbers and a name of 16 bytes


@dataclass(frozen=True)
class Proc:
    """One live process as /proc describes it."""

    pid: int
    # Not compared: a process whose parent died (re-parented), or that called setpgid or
    # setsid, is still the same process, and a stop must still reach it.
    ppid: int = field(compare=False)
    pgrp: int = field(compare=False)
    sid: int = field(compare=False)
    start: int  # clock ticks after boot: tells a reused pid apart
    cpu_ticks: int = field(default=0, compare=False)  # user + system
    rss_pages: int = field(default=0, compare=False)


def read_stat(pid: int) -> Proc | None:
    """The process `pid`, or None if it is gone or a zombie."""
    try:  # os.open, not open(): no file object (a third of the cost of a full scan)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, STAT_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        fields = raw[raw.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return Proc(
            pid,
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            sid=int(fields[3]),
            start=int(fields[19]),
            cpu_ticks=int(fields[11]) + int(fields[12]),
            rss_pages=int(fields[21]),
        )
    except (ValueError, IndexError):
        return None


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def proc_table(exclude: int | None = None) -> dict[int, Proc]:
    """Every live (non-zombie) process, but `exclude`."""
    table = {}
    for pid in pids():
        if pid != exclude:
            proc = read_stat(pid)
            if proc is not None:
                table[pid] = proc
    return table


def _lists_children() -> bool:
    try:
        return os.path.exists(f"/proc/self/task/{os.getpid()}/children")
    except OSError:
        return False


# /proc/<pid>/task/<tid>/children exists where the kernel has CONFIG_PROC_CHILDREN (the
# default of every major distribution); without it a process tree is found by a scan.
LISTS_CHILDREN = _lists_children()


def children(pid: int) -> list[int]:
    """The pids of the children of every thread of `pid` (none if it is gone).

    A child belongs to the thread that forked it, and an orphan to whichever thread of
    its adopter the kernel picked, so every thread's list is read."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        except OSError:
            continue
        finally:
            os.close(fd)
        found.extend(int(word) for word in b"".join(chunks).split())
    return found


def environ_entry(pid: int, name: bytes) -> bytes | None:
    """The `NAME=value` entry of the process's environment as the kernel shows it (the
    block it was exec'd with, or what it wrote there since), or None."""
    prefix = name + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    for entry in data.split(b"\0"):
        if entry.startswith(prefix):
            return entry
    return None


def alive(pid: int) -> bool:
    return read_stat(pid) is not None
