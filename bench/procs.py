"""The benchmark's OS edge: launching with a run token, finding our processes in /proc,
measuring CPU and memory, and killing what is left.

Invariants:
- Everything the benchmark starts carries `BENCH_RUN=<token>` (and `BENCH_TRIAL=<id>`
  for one stack's lifetime) in its environment, and so does everything those processes
  start, since every tool here passes its environment on (circus with `copy_env`).
- Processes are found by that token in /proc/PID/environ and killed by pid only, after
  re-reading the token, never by name.
- Every tool and CLI is launched in a session of its own (a terminal's Ctrl-C reaches
  only the benchmark, which then tears down in order) with a parent-death SIGTERM, so a
  benchmark killed -9 still stops the tools it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

RUN_VAR = "BENCH_RUN"
TRIAL_VAR = "BENCH_TRIAL"
ROLE_VAR = "BENCH_ROLE"
SERVICE_SCRIPT = b"service.py"  # a service is `python [-S] .../service.py ...`
GRANDCHILD_ROLE = b"grandchild"  # the role bench/service.py gives its grandchild
KILL_PATIENCE = 5.0  # seconds of SIGKILL sweeps before giving up on a process
KILL_SWEEP = 0.02

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # Runs in the forked child before exec: SIGTERM it when the benchmark goes.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def launch(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, output appended to `log`, stdin /dev/null."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def run_bounded(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path, timeout: float
) -> tuple[int | None, float]:
    """Run a command to completion within `timeout`; (exit code or None if it had to be
    killed, wall seconds)."""
    start = time.monotonic()
    proc = launch(argv, env, cwd, log)
    code = wait_exit(proc, timeout)
    seconds = time.monotonic() - start
    if code is None:
        kill_group(proc.pid)
        wait_exit(proc, KILL_PATIENCE)
    return code, seconds


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Wait up to `timeout` for `proc` to exit and reap it; its exit code, or None.

    A pidfd wakes us the moment it exits (`Popen.wait(timeout)` polls with sleeps of up
    to 50 ms, which would swamp a 60 ms CLI call)."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # already reaped elsewhere, or no pidfd: fall back to polling
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0.0, timeout) * 1000):
            return None
    finally:
        os.close(fd)
    return proc.wait()


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ------------------------------------------------------------------ finding


@dataclass(frozen=True)
class Found:
    """One of our processes: `role` is service, grandchild or helper (anything else we
    started: a supervisor, its guard or workers, a CLI)."""

    pid: int
    role: str
    trial: str
    command: str


def _environ(pid: int) -> list[bytes] | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None


def is_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie has let go of everything but its pid)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return raw[raw.rindex(b")") + 2 : raw.rindex(b")") + 3] not in (b"Z", b"X")


def _is_service(argv: list[bytes]) -> bool:
    # Not just "service.py appears somewhere": the floor's bash has it as an argument.
    if not argv or not os.path.basename(argv[0]).startswith(b"python"):
        return False
    return any(arg.endswith(SERVICE_SCRIPT) for arg in argv[1:3])


def scan(run: str, trial: str | None = None) -> list[Found]:
    """Every live process of this run (of one trial, if given), classified."""
    run_mark = f"{RUN_VAR}={run}".encode()
    trial_prefix = f"{TRIAL_VAR}=".encode()
    role_mark = f"{ROLE_VAR}=".encode() + GRANDCHILD_ROLE
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        environ = _environ(pid)
        if not environ or run_mark not in environ or not is_alive(pid):
            continue
        their_trial = next(
            (v[len(trial_prefix) :].decode() for v in environ if v.startswith(trial_prefix)), ""
        )
        if trial is not None and their_trial != trial:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if role_mark in environ:
            role = "grandchild"
        elif _is_service(cmdline.split(b"\0")):
            role = "service"
        else:
            role = "helper"
        command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        found.append(Found(pid, role, their_trial, command[:200]))
    return found


def wait_gone(
    pids: Iterable[int], timeout: float, interval: float = 0.005
) -> tuple[float | None, list[int]]:
    """Poll until none of `pids` is alive; (seconds it took or None, pids still alive)."""
    left = set(pids)
    start = time.monotonic()
    deadline = start + timeout
    while True:
        left = {pid for pid in left if is_alive(pid)}
        now = time.monotonic()
        if not left:
            return now - start, []
        if now >= deadline:
            return None, sorted(left)
        time.sleep(interval)


def kill_run(run: str, trial: str | None = None) -> list[Found]:
    """SIGKILL every live process of the run (or trial) until none is left, re-reading
    each one's token right before the signal; returns what had to be killed."""
    killed: dict[int, Found] = {}
    deadline = time.monotonic() + KILL_PATIENCE
    while time.monotonic() < deadline:
        found = scan(run, trial)
        if not found:
            break
        for proc in found:
            environ = _environ(proc.pid)
            if environ and f"{RUN_VAR}={run}".encode() in environ:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.setdefault(proc.pid, proc)
        time.sleep(KILL_SWEEP)
    return list(killed.values())


# ------------------------------------------------------------------ measuring


def cpu_ns(pid: int) -> int:
    """CPU time of a process in ns, summed over its threads (schedstat: finer than the
    10 ms ticks of /proc/PID/stat, which matter for an idle budget of 0.03 s)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_ticks_s(pid: int) -> float:
    """utime + stime of a process (all threads, including ended ones) in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def busy_fraction(since: tuple[int, int]) -> float:
    """Share of all CPUs busy since a `cpu_jiffies()` reading (anything: us or others)."""
    busy, total = cpu_jiffies()
    return (busy - since[0]) / max(1, total - since[1])


@dataclass(frozen=True)
class Memory:
    rss: int
    uss: int
    pss: int
    processes: int


def memory(pids: Iterable[int]) -> Memory:
    """Summed RSS, USS and PSS of `pids` (RSS double-counts pages they share; PSS does not)."""
    rss = uss = pss = count = 0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss, uss, pss, count = rss + info.rss, uss + info.uss, pss + info.pss, count + 1
    return Memory(rss, uss, pss, count)
