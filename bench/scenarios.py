"""One stack of one tool, measured from the outside.

Two boots per trial, each in a temp dir with fresh ports:

- boot A (plain services): cold start, status latency, restart one and env change one
  (+ collateral restarts) a few times over, idle CPU, supervisor-side memory, then SIGTERM;
- boot B (each service with one grandchild): cold start, then kill -9 of the supervisor.

Every wait has a deadline; every poll loop is bounded in time. Timings are taken by
watching the services themselves (ports in /proc/net/tcp, answers on the port, pids in
/proc), never from what a tool says about itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procs
from tools import Service, ServiceArgs, Tool

COLD_DEADLINE = 120.0  # all N ports listening, from the tool's launch
SETTLE = 0.5  # after a cold start, before poking single units
CHANGE_DEADLINE = 60.0  # a restart or env change: CLI returned and new instance answers
CLI_TIMEOUT = 60.0  # any other CLI call
GUARD_GRACE = 1.0  # s a guard is given to finish its clean-up after a kill -9
COLLATERAL_GRACE = 0.5  # after an env change settled, before counting other restarts
IDLE_SETTLE = 0.5  # quiet time before the idle window opens
SIGTERM_DEADLINE = 20.0  # services gone after SIGTERM (supervisord needs ~0.75 s per program)
KILL9_DEADLINE = 1.5  # services and grandchildren gone after kill -9 of the supervisor
TEARDOWN_TIMEOUT = 5.0  # a tool asked to stop at the end of a boot, before SIGKILL
POLL = 0.005  # between polls of a port or of pids
ASK_TIMEOUT = 0.5  # one connection to a service
STATUS_SAMPLES = 3
PORT_RANGE = (20000, 32000)  # below the usual ephemeral range (32768-60999)


@dataclass(frozen=True)
class Answer:
    pid: int
    boot: str
    signature: str
    grandchild: int


def ask(port: int, timeout: float = ASK_TIMEOUT) -> Answer | None:
    """The service's one-line answer, or None if the port does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            line = conn.makefile("rb").readline().decode().split()
        return Answer(int(line[0]), line[1], line[2], int(line[3]))
    except (OSError, ValueError, IndexError):
        return None


def ask_all(ports: list[int]) -> dict[int, Answer | None]:
    return {port: ask(port) for port in ports}


def listening_ports() -> set[int]:
    """Ports with a socket in LISTEN state on 127.0.0.1 or 0.0.0.0 (one cheap read,
    instead of N connection attempts competing with the services for the CPU)."""
    found = set()
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            if fields[3] == "0A" and fields[1][:8] in ("0100007F", "00000000"):
                found.add(int(fields[1][9:], 16))
    return found


def free_ports(count: int, rng: random.Random) -> list[int]:
    """`count` loopback ports nobody listens on, from below the ephemeral range."""
    chosen: list[int] = []
    low, high = PORT_RANGE
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if attempts > 20 * count + 100:
            raise RuntimeError(f"could not find {count} free ports in {low}-{high}")
        port = rng.randrange(low, high)
        if port in chosen:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    return chosen


class Stack:
    """One tool running N services in its own temp dir, torn down on exit."""

    def __init__(
        self,
        tool_cls: type[Tool],
        n: int,
        args: ServiceArgs,
        run: str,
        trial: str,
        root: Path,
        rng: random.Random,
    ) -> None:
        self.run, self.trial = run, trial
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{trial}-", dir=root))
        ports = free_ports(n, rng)
        self.services = [Service(i, port, f"s{i}-v1") for i, port in enumerate(ports)]
        self.ports = ports
        self.tool = tool_cls(self.workdir, self.services, args)
        self.env = {
            **os.environ,
            procs.RUN_VAR: run,
            procs.TRIAL_VAR: trial,
            **self.tool.extra_env(),
        }
        for name in ("SUPERVISE_SOCKET", "SUPERVISE_ENV", "PORT"):
            self.env.pop(name, None)
        self.log = self.workdir / "tool.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leftovers: list[procs.Found] = []
        self.sigterm_sent = False

    def __enter__(self) -> Stack:
        self.tool.write_config()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def launch(self) -> float:
        """Start the tool; returns the monotonic start time."""
        start = time.monotonic()
        self.proc = procs.launch(self.tool.start(), self.env, self.workdir, self.log)
        return start

    def cli(self, argv: list[str], timeout: float = CLI_TIMEOUT) -> tuple[int | None, float]:
        return procs.run_bounded(argv, self.env, self.workdir, self.workdir / "cli.log", timeout)

    def teardown(self) -> None:
        """Stop the tool (SIGTERM, then SIGKILL of its group), then kill anything of this
        trial still alive; what had to be killed is kept in `leftovers`."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            # Already asked once (the SIGTERM scenario ran out of time): do not wait again.
            patience = 0.0 if self.sigterm_sent else TEARDOWN_TIMEOUT
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            if procs.wait_exit(proc, patience) is None:
                procs.kill_group(proc.pid)
                procs.wait_exit(proc, procs.KILL_PATIENCE)
        self._let_guards_finish()
        self.leftovers = procs.kill_run(self.run, self.trial)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _let_guards_finish(self) -> None:
        """A supervise guard still running after its supervisor is gone is ending the
        units and then removing the runtime directory (published keys): killing it, or
        the grep it runs, midway would leave that directory behind. Bounded; whatever is
        left after it is killed as before."""
        deadline = time.monotonic() + GUARD_GRACE
        while time.monotonic() < deadline:
            if not any("guard.sh" in f.command for f in procs.scan(self.run, self.trial)):
                return
            time.sleep(0.01)

    def wait_listening(self, start: float) -> tuple[float | None, int]:
        """Seconds from `start` until every port listens (None: not within the deadline),
        and how many did."""
        wanted = set(self.ports)
        deadline = start + COLD_DEADLINE
        while True:
            up = wanted & listening_ports()
            now = time.monotonic()
            if up == wanted:
                return now - start, len(up)
            if now > deadline or (self.proc is not None and self.proc.poll() is not None):
                return None, len(up)
            time.sleep(POLL)

    def timed_change(
        self, argv: list[str], port: int, done: Callable[[Answer], bool]
    ) -> dict[str, Any]:
        """Run a CLI command while polling `port`: seconds until the port gives an answer
        that satisfies `done`, seconds until the CLI returned, and whether the new
        instance already answered at the moment the CLI returned."""
        start = time.monotonic()
        proc = procs.launch(argv, self.env, self.workdir, self.workdir / "cli.log")
        answered = returned = None
        ready_at_return = None
        code = None
        while True:
            now = time.monotonic()
            if returned is None and proc.poll() is not None:
                returned, code = now - start, proc.returncode
                answer = ask(port)
                ready_at_return = bool(answer and done(answer))
                if ready_at_return and answered is None:
                    answered = returned
            if answered is None:
                answer = ask(port)
                if answer is not None and done(answer):
                    answered = time.monotonic() - start
            if answered is not None and returned is not None:
                break
            if now - start > CHANGE_DEADLINE:
                procs.kill_group(proc.pid)
                procs.wait_exit(proc, procs.KILL_PATIENCE)
                break
            time.sleep(POLL)
        return {
            "answer_s": answered,
            "cli_s": returned,
            "cli_exit": code,
            "ready_at_return": ready_at_return,
        }

    def members(self) -> list[procs.Found]:
        return procs.scan(self.run, self.trial)


def boot_a(
    stack: Stack, rng: random.Random, idle_window: float, changes: int = 1
) -> dict[str, Any]:
    """Cold start, status, `changes` times restart one and env change one (each on a
    unit of its own), idle CPU, memory, SIGTERM."""
    tool = stack.tool
    result: dict[str, Any] = {}
    start = stack.launch()
    cold, listening = stack.wait_listening(start)
    result["cold_start_s"], result["listening"] = cold, listening
    if cold is None:
        result["error"] = f"only {listening}/{len(stack.ports)} ports listened"
        return result
    time.sleep(SETTLE)

    status = tool.status()
    if status is not None:
        samples = [stack.cli(status) for _ in range(STATUS_SAMPLES)]
        result["status_s"] = [seconds for _, seconds in samples]
        result["status_exit"] = [code for code, _ in samples]

    n = len(stack.services)
    # Each change on a unit of its own, restarts and env changes taken in turns.
    chosen = rng.sample(range(n), min(n, 2 * changes))
    restart_units, env_units = chosen[0::2], chosen[1::2]
    result["restart_units"], result["env_units"] = restart_units, env_units
    result["restarts"], result["env_changes"] = [], []
    for restart_i, env_i in zip(restart_units, env_units, strict=False):
        restart_port, env_port = stack.ports[restart_i], stack.ports[env_i]
        command = tool.restart(restart_i)
        if command is not None:
            old = ask(restart_port)
            old_boot = old.boot if old else ""
            result["restarts"].append(
                stack.timed_change(command, restart_port, _boot_is_not(old_boot))
            )

        signature = f"s{env_i}-v2"
        before = ask_all(stack.ports)
        command = tool.change_env(env_i, signature)
        if command is not None:
            change = stack.timed_change(command, env_port, _serves(signature))
            time.sleep(COLLATERAL_GRACE)
            after = ask_all(stack.ports)
            others = [p for p in stack.ports if p != env_port]
            change["collateral"] = sum(1 for p in others if not _same_boot(before[p], after[p]))
            result["env_changes"].append(change)

    time.sleep(IDLE_SETTLE)
    members = stack.members()
    helpers = [m.pid for m in members if m.role == "helper"]
    services = [m.pid for m in members if m.role != "helper"]
    result["helpers"] = sorted({_short(m.command) for m in members if m.role == "helper"})
    result["helper_count"] = len(helpers)
    ns0 = {pid: procs.cpu_ns(pid) for pid in helpers}
    ticks0 = {pid: procs.cpu_ticks_s(pid) for pid in helpers}
    svc0 = sum(procs.cpu_ns(pid) for pid in services)
    machine0 = procs.cpu_jiffies()
    window_start = time.monotonic()
    time.sleep(idle_window)
    result["idle_machine_busy"] = procs.busy_fraction(machine0)
    window = time.monotonic() - window_start
    scale = 30.0 / window
    result["idle_window_s"] = window
    result["idle_cpu_30s"] = sum(procs.cpu_ns(p) - ns0[p] for p in helpers) / 1e9 * scale
    result["idle_cpu_ticks_30s"] = sum(procs.cpu_ticks_s(p) - ticks0[p] for p in helpers) * scale
    result["idle_services_cpu_30s"] = (sum(procs.cpu_ns(p) for p in services) - svc0) / 1e9 * scale

    mem = procs.memory(helpers)
    result["rss"], result["uss"], result["pss"] = mem.rss, mem.uss, mem.pss
    by_helper: dict[str, dict[str, int]] = {}
    for member in members:
        if member.role == "helper":
            one = procs.memory([member.pid])
            entry = by_helper.setdefault(_short(member.command), {"count": 0, "rss": 0, "uss": 0})
            entry["count"] += one.processes
            entry["rss"] += one.rss
            entry["uss"] += one.uss
    result["memory_by_helper"] = by_helper

    members = stack.members()
    targets = [m.pid for m in members if m.role != "helper"]
    result["sigterm_targets"] = len(targets)
    assert stack.proc is not None
    proc, left = stack.proc, set(targets)
    gone = exited = None
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    stack.sigterm_sent = True
    while gone is None or exited is None:
        now = time.monotonic()
        if gone is None:
            left = {pid for pid in left if procs.is_alive(pid)}
            if not left:
                gone = now - sent
        if exited is None and proc.poll() is not None:
            exited = now - sent
        if now - sent > SIGTERM_DEADLINE:
            break
        time.sleep(POLL)
    result["sigterm_gone_s"], result["sigterm_left"] = gone, len(left) if gone is None else 0
    result["sigterm_exit_s"], result["sigterm_exit_code"] = exited, proc.returncode
    result["sigterm_survivors"] = _roles(stack.members())
    return result


def _boot_is_not(boot: str) -> Callable[[Answer], bool]:
    return lambda answer: answer.boot != boot


def _serves(signature: str) -> Callable[[Answer], bool]:
    return lambda answer: answer.signature == signature


def boot_b(stack: Stack) -> dict[str, Any]:
    """Cold start with grandchildren, then kill -9 of the supervisor: are the services
    and grandchildren gone, and how fast?"""
    result: dict[str, Any] = {}
    start = stack.launch()
    cold, listening = stack.wait_listening(start)
    result["cold_start_s"], result["listening"] = cold, listening
    if cold is None:
        result["error"] = f"only {listening}/{len(stack.ports)} ports listened"
        return result
    members = stack.members()
    targets = [m.pid for m in members if m.role != "helper"]
    result["kill9_targets"] = _roles(members)
    assert stack.proc is not None
    os.kill(stack.proc.pid, signal.SIGKILL)
    gone, left = procs.wait_gone(targets, KILL9_DEADLINE)
    result["kill9_gone_s"], result["kill9_left"] = gone, len(left)
    procs.wait_exit(stack.proc, procs.KILL_PATIENCE)
    result["kill9_survivors"] = _roles(stack.members())
    return result


def _same_boot(before: Answer | None, after: Answer | None) -> bool:
    # A port that does not answer on either side counts as restarted.
    return before is not None and after is not None and before.boot == after.boot


def _roles(members: list[procs.Found]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for member in members:
        counts[member.role] = counts.get(member.role, 0) + 1
    return counts


def _short(command: str) -> str:
    """A helper's name for the report: the script or module an interpreter runs."""
    words = command.split()
    while (
        words and os.path.basename(words[0]).startswith(("python", "bash", "sh")) and len(words) > 1
    ):
        if words[1] == "-m" and len(words) > 2:
            return words[2]
        if words[1] == "-c" and len(words) > 2:
            return "python -c " + " ".join(words[2:4])[:48]
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[1:]
    return os.path.basename(words[0]) if words else command
