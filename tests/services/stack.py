"""Real reference-stack processes for tests: servers on free loopback ports, and their env.

Every process is started in its own session and stopped by ``Servers.stop_all`` (SIGTERM
to its group, a bounded wait, then SIGKILL) before the suite-wide orphan net looks.
Readiness is polled on ``/healthz`` with a deadline that fails as "want X, got Y after
T", never slept for.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.incident.children import STACK_KEYS, free_port

REPO = Path(__file__).resolve().parents[2]
# A server imports the MCP SDK (~0.5 s here); generous for a loaded CI machine.
READY_SECONDS = 20.0
# A server's graceful stop is bounded by its own 5 s; after this it is killed.
STOP_SECONDS = 10.0
POLL_SECONDS = 0.02

# Keys a test must set explicitly, never inherit from whoever runs pytest.
_SCRUBBED = STACK_KEYS


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment (with the orphan net's token) minus stack keys, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Server:
    """One server process started by a test."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, deadline_seconds: float = READY_SECONDS) -> dict[str, Any]:
        """Poll ``/healthz`` until it answers; fail with what was seen instead."""
        started = time.monotonic()
        seen = "nothing yet"
        while time.monotonic() - started < deadline_seconds:
            if self.proc.poll() is not None:
                seen = f"exit status {self.proc.returncode}"
                break
            try:
                self.health = get_json(f"http://127.0.0.1:{self.port}/healthz")
                return self.health
            except (OSError, urllib.error.URLError) as exc:
                seen = repr(exc)
            time.sleep(POLL_SECONDS)
        pytest.fail(
            f"want {self.name} answering /healthz on port {self.port}, got {seen} after "
            f"{time.monotonic() - started:.1f} s; output:\n{self.output()}"
        )

    def signal_stop(self) -> None:
        """SIGTERM to the server's whole process group (it leads its own session)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Reap the server; SIGKILL its group if it outstays ``STOP_SECONDS``."""
        try:
            self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        self.signal_stop()
        self.wait_stopped()


class Servers:
    """Starts servers for one test and stops every one of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []

    def start(
        self, name: str, env: Mapping[str, str], *, port: int | None = None, wait: bool = True
    ) -> Server:
        port = port or free_port()
        log = self.tmp_path / f"{name}-{port}-{len(self.started)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "--port", str(port)],
                env=child_env(env),
                cwd=self.tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(name, port, proc, log)
        self.started.append(server)
        if wait:
            server.wait_ready()
        return server

    def stop_all(self) -> None:
        """Stop every server started here, signalling all first so they stop together."""
        for server in self.started:
            server.signal_stop()
        for server in self.started:
            server.wait_stopped()


# Bounds a run that should end in milliseconds; a hang fails instead of stalling the suite.
EXIT_SECONDS = 10.0


def run_module(
    module: str,
    env: dict[str, str],
    cwd: Path,
    *,
    flags: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``python [flags] -m module [args]`` to its end, output captured."""
    return subprocess.run(
        [sys.executable, *flags, "-m", module, *args],
        env=child_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EXIT_SECONDS,
        check=False,
    )
