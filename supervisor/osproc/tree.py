"""Finding and killing a unit's whole process tree.

A unit's processes are: its session and process group (sid = pgid = the leader's pid,
known at spawn), every descendant of the leader (snapshotted before signalling, since a
reparented process no longer looks like one), and every orphan adopted by this
supervisor (a child subreaper) or by init whose environment carries the unit's marker
(`SUPERVISE_ENV=<its file>`): grandchildren that called `setsid` and were reparented away.
Warm units (forked from a zygote) carry it too: the zygote writes it into the forked
child's environment block before the unit's code runs (see `zygote_main`).

Everything comes from one pass over /proc/*/stat (plus the environment of adopted
orphans only), so stopping a unit costs a few milliseconds however many processes the
machine runs. Signals go by pid, after checking the pid's start time is unchanged, so a
reused pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from supervisor.osproc import procfs
from supervisor.osproc.procfs import Proc

SWEEP_INTERVAL = 0.02  # between checks for leftovers while a tree is going away
# Units stopped together (a shutdown, a model's drop) share one /proc scan taken no longer
# ago than this, instead of one scan each: N units cost one pass, not N.
SHARED_SCAN_AGE = 0.05
KILL_PATIENCE = 5.0  # SIGKILLed processes stuck in the kernel (state D) are given up on
REAP_PATIENCE = 1.0  # SIGKILL cannot be ignored; after it only the leader's reap is left


def proc_table() -> dict[int, Proc]:
    """Every live (non-zombie) process but this one."""
    return procfs.proc_table(exclude=os.getpid())


_shared: tuple[float, dict[int, Proc]] = (float("-inf"), {})


def table_since(moment: float) -> dict[int, Proc]:
    """A process table scanned at or after `moment` (monotonic), shared between callers.

    A scan taken after a unit's leader exited is enough to find what it left: a member can
    only be forked by a member, and every member alive then is in the scan.
    """
    global _shared
    taken, table = _shared
    if taken < moment:
        taken = time.monotonic()
        table = proc_table()
        _shared = (taken, table)
    return table


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


@dataclass(frozen=True)
class _Index:
    """Lookups over one process table, built once and shared by units stopped together."""

    table: dict[int, Proc]
    children: dict[int, list[int]]  # ppid → pids
    grouped: dict[int, list[int]]  # pgrp or sid → pids
    adopted: list[Proc]  # children of this process or of init: orphans, maybe of a unit


_index: _Index | None = None


def _index_of(table: dict[int, Proc]) -> _Index:
    global _index
    if _index is None or _index.table is not table:
        adopters = {os.getpid(), 1}
        children: dict[int, list[int]] = {}
        grouped: dict[int, list[int]] = {}
        adopted = []
        for proc in table.values():
            children.setdefault(proc.ppid, []).append(proc.pid)
            grouped.setdefault(proc.pgrp, []).append(proc.pid)
            if proc.sid != proc.pgrp:
                grouped.setdefault(proc.sid, []).append(proc.pid)
            if proc.ppid in adopters:
                adopted.append(proc)
        _index = _Index(table, children, grouped, adopted)
    return _index


def members(leader: int, marker: bytes | None, table: dict[int, Proc] | None = None) -> list[Proc]:
    """Every process of the unit whose leader is `leader` (in `table`, default a fresh
    scan); callers check liveness again before signalling."""
    index = _index_of(proc_table() if table is None else table)
    roots = [leader, *index.grouped.get(leader, ())]
    if marker is not None:
        roots += [p.pid for p in index.adopted if marker_of(p) == marker]
    found: dict[int, Proc] = {}
    while roots:
        pid = roots.pop()
        if pid in index.table and pid not in found:
            found[pid] = index.table[pid]
            roots.extend(index.children.get(pid, ()))
    return list(found.values())


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


async def stop_tree(
    leader: int,
    marker: bytes | None,
    sig: signal.Signals,
    timeout: float,
    leader_exited: anyio.Event,
) -> int:
    """Stop a unit's tree: `sig` to its group and to every process of the unit, wait up to
    `timeout` for all of them to go, then SIGKILL whatever is left.

    Returns:
        How many processes had to be killed.
    """
    procs = members(leader, marker, table_since(time.monotonic() - SHARED_SCAN_AGE))
    signal_group(leader, sig)
    send(procs, sig)
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
    left = {p.pid: p for p in [*still_alive(known), *members(leader, marker, table_since(since))]}
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
