"""Finding and killing a unit's whole process tree.

A unit's processes are: its session and process group (sid = pgid = the leader's pid,
known at spawn), every descendant of the leader (snapshotted before signalling, since a
reparented process no longer looks like one), and every orphan adopted by this
supervisor (a child subreaper) or by init whose environment carries the unit's marker
(`SUPERVISE_ENV=<its file>`): grandchildren that called `setsid` and were reparented away.
Warm units (forked from a zygote) carry it too: the zygote writes it into the forked
child's environment block before the unit's code runs (see `zygote_main`).

The tree is walked from the leader through /proc/<pid>/task/<tid>/children, and the
orphans come from this process's and init's own lists of children (the environment of
those only is read), so stopping a unit costs what the unit has, however many processes
the machine runs; where the kernel does not list children, one pass over /proc/*/stat
serves instead. Signals go by pid, after checking the pid's start time is unchanged, so a
reused pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

import anyio
import anyio.lowlevel

from supervisor.osproc import procfs
from supervisor.osproc.procfs import Proc
from supervisor.osproc.spawn import spawned

SWEEP_INTERVAL = 0.02  # between checks for leftovers while a tree is going away
# Units stopped together (a shutdown, a model's drop) share one look at the adopted orphans
# (or one /proc scan) taken no longer ago than this, instead of one each.
SHARED_SCAN_AGE = 0.05
KILL_PATIENCE = 5.0  # SIGKILLed processes stuck in the kernel (state D) are given up on
REAP_PATIENCE = 1.0  # SIGKILL cannot be ignored; after it only the leader's reap is left


def proc_table() -> dict[int, Proc]:
    """Every live (non-zombie) process but this one."""
    return procfs.proc_table(exclude=os.getpid())


MARKER_NAME = b"SUPERVISE_ENV"  # every process of a unit carries SUPERVISE_ENV=<its file>
_markers: dict[Proc, bytes | None] = {}
_MARKER_MEMO_SIZE = 4096  # processes whose marker is remembered (a line each, not an environ)


def marker_of(proc: Proc) -> bytes | None:
    """The process's `SUPERVISE_ENV=...` entry; each process is read once (its identity
    includes its start time, so a reused pid is a new entry)."""
    if proc in _markers:
        return _markers[proc]
    entry = procfs.environ_entry(proc.pid, MARKER_NAME)
    if len(_markers) >= _MARKER_MEMO_SIZE:
        _markers.clear()
    _markers[proc] = entry
    return entry


class Look:
    """One look at the processes a unit may have, shared by the units stopped together.

    Where the kernel lists each process's children, a look holds only the orphans that
    this process (a child subreaper) or init adopted, and each unit's tree is walked from
    its leader: the cost is the unit's own processes, not the machine's. Elsewhere it
    holds a scan of every process."""

    def __init__(self) -> None:
        self.taken = time.monotonic()
        self.table: dict[int, Proc] | None = None
        self.adopted: list[Proc] = []
        self._children: dict[int, list[int]] | None = None
        self._grouped: dict[int, list[int]] = {}
        if not procfs.LISTS_CHILDREN:
            self.table = proc_table()
            self.adopted = [p for p in self.table.values() if p.ppid in (os.getpid(), 1)]
            return
        own = os.getpid()
        adopters = [own] if own == 1 else [own, 1]
        for adopter in adopters:
            for pid in procfs.children(adopter):
                if adopter == own and pid in spawned:
                    continue  # a leader spawned here, not an orphan
                proc = procfs.read_stat(pid)
                if proc is not None:
                    self.adopted.append(proc)

    def roots(self, leader: int, marker: bytes | None) -> list[int]:
        """The leader, and the adopted orphans of its group, session or marker."""
        roots = [leader]
        for proc in self.adopted:
            if leader in (proc.pgrp, proc.sid) or (
                marker is not None and marker_of(proc) == marker
            ):
                roots.append(proc.pid)
        if self.table is not None:
            roots += self._grouped_index().get(leader, ())
        return roots

    def children(self, pid: int) -> list[int]:
        if self.table is None:
            return procfs.children(pid)
        if self._children is None:
            self._children = {}
            for proc in self.table.values():
                self._children.setdefault(proc.ppid, []).append(proc.pid)
        return self._children.get(pid, [])

    def stat(self, pid: int) -> Proc | None:
        if self.table is None:
            return procfs.read_stat(pid)
        return self.table.get(pid)

    def _grouped_index(self) -> dict[int, list[int]]:
        assert self.table is not None
        if not self._grouped:
            for proc in self.table.values():
                self._grouped.setdefault(proc.pgrp, []).append(proc.pid)
                if proc.sid != proc.pgrp:
                    self._grouped.setdefault(proc.sid, []).append(proc.pid)
        return self._grouped


_shared: Look | None = None


def look_since(moment: float) -> Look:
    """A look taken at or after `moment` (monotonic), shared between callers.

    A look taken after a unit's leader exited is enough to find what it left: a member
    can only be forked by a member, and what the leader left is adopted here (or by init)
    and carries its marker, its group or its session."""
    global _shared
    if _shared is None or _shared.taken < moment:
        _shared = Look()
    return _shared


def members(leader: int, marker: bytes | None, look: Look | None = None) -> list[Proc]:
    """Every process of the unit whose leader is `leader` (from `look`, default a fresh
    one); callers check liveness again before signalling."""
    look = look or Look()
    roots = look.roots(leader, marker)
    found: dict[int, Proc] = {}
    while roots:
        pid = roots.pop()
        if pid in found or pid == os.getpid():
            continue
        proc = look.stat(pid)
        if proc is not None:
            found[pid] = proc
            roots.extend(look.children(pid))
    return list(found.values())


# Members recorded before their units were signalled (a shutdown's level): a descendant
# reparented when its leader dies is still known to be the unit's.
_recorded: dict[int, tuple[float, list[Proc]]] = {}


def record_members(units: Iterable[tuple[int, bytes | None]]) -> None:
    """Look at these units' trees now, before they are signalled, for their stops."""
    look = look_since(time.monotonic())
    for leader, marker in units:
        _recorded[leader] = (look.taken, members(leader, marker, look))


def _first_members(leader: int, marker: bytes | None) -> list[Proc]:
    taken, procs = _recorded.pop(leader, (float("-inf"), []))
    fresh = time.monotonic() - SHARED_SCAN_AGE
    return procs if taken >= fresh else members(leader, marker, look_since(fresh))


def still_alive(procs: Iterable[Proc]) -> list[Proc]:
    return [p for p in procs if procfs.read_stat(p.pid) == p]


def send(procs: Iterable[Proc], sig: signal.Signals) -> None:
    for proc in procs:
        if procfs.read_stat(proc.pid) == proc:  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# Units whose group a level's stop has signalled already (leader → the leader as it was,
# the signal): their own `stop_tree` does not signal them again. Many servers (uvicorn,
# Node, Go) take a second SIGINT or SIGTERM as "quit now, drop what is in flight".
_signalled: dict[int, tuple[Proc | None, signal.Signals]] = {}


def signal_first(leader: int, sig: signal.Signals) -> None:
    """`sig` to a unit's group now, ahead of its `stop_tree`, which will not repeat it."""
    _signalled[leader] = (procfs.read_stat(leader), sig)
    signal_group(leader, sig)


def _signalled_already(leader: int, sig: signal.Signals) -> bool:
    was, sent = _signalled.pop(leader, (None, None))
    if sent is not sig or was is None:
        return False
    now = procfs.read_stat(leader)
    return now is None or now == was  # not a reused pid's new process


async def stop_tree(
    leader: int,
    marker: bytes | None,
    sig: signal.Signals,
    timeout: float,
    leader_exited: anyio.Event,
) -> int:
    """Stop a unit's tree: `sig` once to each of its processes — to its group (unless
    `signal_first` did), and to each process of the unit outside the group — wait up to
    `timeout` for all of them to go, then SIGKILL whatever is left.

    Returns:
        How many processes had to be killed.
    """
    procs = _first_members(leader, marker)
    if not _signalled_already(leader, sig):
        signal_group(leader, sig)
    send([p for p in procs if p.pgrp != leader], sig)  # the group's members had it
    with anyio.move_on_after(timeout):
        await leader_exited.wait()
        while still_alive(procs):
            await anyio.sleep(SWEEP_INTERVAL)
    return await kill_tree(leader, marker, procs, leader_exited)


async def kill_tree(
    leader: int,
    marker: bytes | None,
    known: Iterable[Proc],
    leader_exited: anyio.Event,
) -> int:
    """SIGKILL every process of a unit until none is left (looking again each round,
    since a dying parent can still have forked), and wait for the leader's reap."""
    killed = 0
    # The first look may share a scan, as long as it was taken after this point, when
    # the leader (if it exited) was already gone; later looks scan afresh.
    since = time.monotonic()
    await anyio.lowlevel.checkpoint()  # let units stopping together reach this point and share it
    left = {p.pid: p for p in [*still_alive(known), *members(leader, marker, look_since(since))]}
    with anyio.move_on_after(KILL_PATIENCE):
        while left:
            killed += len(left)
            signal_group(leader, signal.SIGKILL)
            send(left.values(), signal.SIGKILL)
            await anyio.sleep(SWEEP_INTERVAL)
            left = {p.pid: p for p in [*still_alive(left.values()), *members(leader, marker)]}
    with anyio.move_on_after(REAP_PATIENCE):
        await leader_exited.wait()
    return killed
