"""Finding and killing a unit's whole process tree.

A unit's processes are: its session and process group (sid = pgid = the leader's pid,
known at spawn), every descendant of the leader (snapshotted before signalling, since a
reparented process no longer looks like one), and every orphan adopted by this
supervisor (a child subreaper) or by init whose environment carries the unit's marker
(`SUPERVISE_ENV=<its file>`): grandchildren that called `setsid` and were reparented away.

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
from pathlib import Path

import anyio
import anyio.lowlevel

SWEEP_INTERVAL = 0.02  # between checks for leftovers while a tree is going away
# Units stopped together (a shutdown, a model's drop) share one /proc scan taken no longer
# ago than this, instead of one scan each: N units cost one pass, not N.
SHARED_SCAN_AGE = 0.05
KILL_PATIENCE = 5.0  # SIGKILLed processes stuck in the kernel (state D) are given up on


@dataclass(frozen=True)
class Proc:
    """One live process as /proc describes it; `start` tells a reused pid apart."""

    pid: int
    ppid: int
    pgrp: int
    sid: int
    start: int


def _read(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def proc_table() -> dict[int, Proc]:
    """Every live (non-zombie) process but this one."""
    me = os.getpid()
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            proc = _read(int(entry))
            if proc is not None:
                table[proc.pid] = proc
    return table


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


_environs: dict[Proc, frozenset[bytes]] = {}
_ENVIRON_MEMO_SIZE = 4096  # processes whose environment is remembered (pid + start time)


def _has_marker(proc: Proc, marker: bytes) -> bool:
    """Whether the process's environment carries `marker`; each process is read once
    (its identity includes its start time, so a reused pid is a new entry)."""
    environ = _environs.get(proc)
    if environ is None:
        try:
            environ = frozenset(Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"))
        except OSError:
            return False
        if len(_environs) >= _ENVIRON_MEMO_SIZE:
            _environs.clear()
        _environs[proc] = environ
    return marker in environ


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


def members(leader: int, marker: bytes, table: dict[int, Proc] | None = None) -> list[Proc]:
    """Every process of the unit whose leader is `leader` (in `table`, default a fresh
    scan); callers check liveness again before signalling."""
    index = _index_of(proc_table() if table is None else table)
    roots = [leader, *index.grouped.get(leader, ())]
    roots += [p.pid for p in index.adopted if _has_marker(p, marker)]
    found: dict[int, Proc] = {}
    while roots:
        pid = roots.pop()
        if pid in index.table and pid not in found:
            found[pid] = index.table[pid]
            roots.extend(index.children.get(pid, ()))
    return list(found.values())


def still_alive(procs: Iterable[Proc]) -> list[Proc]:
    return [p for p in procs if _read(p.pid) == p]


def send(procs: Iterable[Proc], sig: signal.Signals) -> None:
    for proc in procs:
        if _read(proc.pid) == proc:  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def stop_tree(
    leader: int,
    marker: bytes,
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
    marker: bytes,
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
    with anyio.move_on_after(1):  # SIGKILL cannot be ignored; only the reap is left
        await leader_exited.wait()
    return killed
