"""Finding and killing a unit's whole process tree.

A unit's processes are: its session (sid = pgid = the leader's pid, known at spawn), every
descendant of the leader (snapshotted before signalling, since a reparented process no
longer looks like one), and every process whose environment carries the unit's marker
(`SUPERVISE_ENV=<its file>`), which catches grandchildren that called `setsid` and were
reparented away. Signals go by pid only; pid reuse is ruled out by psutil's create-time
check.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import anyio
import psutil

SWEEP_INTERVAL = 0.02  # between checks for leftovers while a tree is going away
KILL_PATIENCE = 5.0  # SIGKILLed processes stuck in the kernel (state D) are given up on


def _stat_fields(pid: str) -> tuple[int, int] | None:
    """(pgrp, session) of a pid from /proc, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[2]), int(fields[3])


def scan(sessions: Iterable[int] = (), markers: Iterable[bytes] = ()) -> list[int]:
    """Live pids in any of `sessions` or whose environment has a line starting with one
    of `markers` (as bytes, e.g. b"SUPERVISE_ENV=/run/x/")."""
    wanted = set(sessions)
    prefixes = tuple(markers)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        ids = _stat_fields(entry)
        if ids is None:
            continue
        if ids[0] in wanted or ids[1] in wanted:
            found.append(int(entry))
            continue
        if prefixes:
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if any(var.startswith(prefixes) for var in environ.split(b"\0")):
                found.append(int(entry))
    return found


def snapshot(leader: int, session: int, marker: bytes) -> list[psutil.Process]:
    """Every live process of a unit, as psutil handles (which remember create time)."""
    procs: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(leader)
        for proc in [root, *root.children(recursive=True)]:
            procs[proc.pid] = proc
    except psutil.Error:
        pass
    for pid in scan([session], [marker]):
        if pid not in procs:
            try:
                procs[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
    return list(procs.values())


def alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.Error:
            continue
    return left


def signal_all(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # checks the pid still belongs to this process
        except psutil.Error:
            continue


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
    procs = snapshot(leader, leader, marker)
    signal_group(leader, sig)
    signal_all(procs, sig)
    with anyio.move_on_after(timeout):
        await leader_exited.wait()
        while alive(procs):
            await anyio.sleep(SWEEP_INTERVAL)
    return await kill_tree(leader, marker, procs, leader_exited)


async def kill_tree(
    leader: int,
    marker: bytes,
    known: Iterable[psutil.Process],
    leader_exited: anyio.Event,
) -> int:
    """SIGKILL every process of a unit until none is left (re-scanning, since a dying
    parent can still have forked), and wait for the leader's reap."""
    killed = 0
    procs = alive([*known, *snapshot(leader, leader, marker)])
    with anyio.move_on_after(KILL_PATIENCE):
        while procs:
            killed += len(procs)
            signal_group(leader, signal.SIGKILL)
            signal_all(procs, signal.SIGKILL)
            await anyio.sleep(SWEEP_INTERVAL)
            procs = alive([*procs, *snapshot(leader, leader, marker)])
    with anyio.move_on_after(1):  # SIGKILL cannot be ignored; only the reap is left
        await leader_exited.wait()
    return killed
