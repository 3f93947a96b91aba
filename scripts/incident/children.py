"""Processes the incident's reproduction starts, and how it waits for and stops them.

The one process harness of the reference stack: ``tests/services/stack.py`` and
``tests/container/`` build on it too (the script cannot depend on the tests).

Invariants: every process leads its own session and is stopped when its ``Children``
block ends, whatever happened — SIGTERM, a bounded wait, then SIGKILL, to its process
group or (for the supervisor, which stops its own units) to its pid; never by name.
Every wait polls with a deadline and fails as "want X, got Y after T". Children never
inherit the caller's stack keys (``SIGNATURE``, ``TODAY_DATE``, ``RUNTIME_ENV_PATH``,
...), only the ones given here; the orphan net's token and the rest pass through.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = REPO / "supervise.toml"

# Three servers importing the MCP SDK at once (~0.5 s each alone); generous for CI.
SERVER_READY_SECONDS = 30.0
# One process's graceful stop; the stack's own shutdown_timeout is 25 s.
STOP_SECONDS = 30.0
POLL_SECONDS = 0.05

# Keys the children get only from here, never from whoever runs this.
STACK_KEYS = (
    "SIGNATURE",
    "TODAY_DATE",
    "START_DATE",
    "RUNTIME_ENV_PATH",
    "PORT",
    "HTTP_HOST",
    "DATA_DIR",
    "PRICE_FILE",
    "MARKET",
    "BASE_MODEL",
    "INITIAL_CASH",
    "DAYS",
    "TRADE_URL",
    "PRICE_URL",
    "MATH_URL",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "SUPERVISE_ENV",
    "SUPERVISE_MODEL",
    "SUPERVISE_SOCKET",
    "SUPERVISE_UNIT",
)

T = TypeVar("T")


class IncidentError(Exception):
    """A step of the reproduction could not be carried out (not a verdict)."""

    def __init__(self, step: str, problem: str) -> None:
        self.step = step
        self.problem = problem
        super().__init__(f"{step}: {problem}")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment minus stack keys, the venv's bin first on PATH, the repo importable."""
    env = {key: value for key, value in os.environ.items() if key not in STACK_KEYS}
    # Units run `python -m ...`: the python next to ours, with this repository on its path.
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(what: str, probe: Callable[[], tuple[T | None, str]], seconds: float) -> T:
    """Call ``probe`` until it returns a value; it also says what it saw, for the failure.

    Raises:
        IncidentError: "want X, got Y after T" once ``seconds`` have passed.
    """
    started = time.monotonic()
    while True:
        value, seen = probe()
        if value is not None:
            return value
        if time.monotonic() - started > seconds:
            raise IncidentError(what, f"want {what}, got {seen} after {seconds:g} s")
        time.sleep(POLL_SECONDS)


@dataclass
class Child:
    """One process started here, in its own session, its output in a file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    group: bool  # stop by process group (servers) or by pid (the supervisor: it stops its own)

    def __repr__(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"<Child {self.name} pid {self.proc.pid} {state}>"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)

    def wait(self, seconds: float = STOP_SECONDS) -> int:
        """Reap it; SIGKILL it (its group, or it alone) if it outstays ``seconds``."""
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            # Still unreaped here, so its pid is still its group's id: no reuse to fear.
            self.signal(signal.SIGKILL)
            return self.proc.wait(timeout=seconds)


class Children:
    """Starts processes and stops every one of them when the ``with`` block ends."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Child] = []

    def __repr__(self) -> str:
        return f"<Children {', '.join(map(repr, self.started)) or 'none'}>"

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        *,
        group: bool = True,
        pass_fds: tuple[int, ...] = (),
    ) -> Child:
        """Start ``argv`` in a new session, stdout and stderr to ``logs/NAME.log``.

        ``pass_fds`` are kept open in the child (a listening socket to hand down).
        """
        log = self.logs / f"{name.replace('/', '-')}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                pass_fds=pass_fds,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log, group)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        """SIGTERM all first (so they stop together), then reap each one."""
        for child in self.started:
            child.signal(signal.SIGTERM)
        for child in self.started:
            child.wait()


def wait_healthy(child: Child, port: int) -> dict[str, Any]:
    """Poll the server's ``/healthz`` until it answers; fail at once if it exits.

    Raises:
        IncidentError: it exited, or did not answer within ``SERVER_READY_SECONDS``.
    """

    def health() -> tuple[dict[str, Any] | None, str]:
        if child.proc.poll() is not None:
            raise IncidentError(
                f"starting {child.name}",
                f"exited {child.proc.returncode} before answering; output:\n{child.output()}",
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                body: dict[str, Any] = json.loads(answer.read())
                return body, "an answer"
        except OSError as exc:
            return None, repr(exc)

    return poll(f"{child.name} answering /healthz on port {port}", health, SERVER_READY_SECONDS)


def indent(text: str, prefix: str = "    | ") -> str:
    """Each line of ``text`` under ``prefix``, for quoting a process's output."""
    return "".join(f"{prefix}{line}\n" for line in text.splitlines())
