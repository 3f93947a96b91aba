"""Real reference-stack processes for tests: servers on free loopback ports, and their env.

Built on the incident reproduction's harness (``scripts.incident.children``), so the
script and the tests share one way to spawn, wait and stop: every process leads its own
session, its output goes to a file, readiness is polled on ``/healthz`` with a deadline
that fails as "want X, got Y after T" (never slept for), and ``Servers.stop_all`` stops
each one (SIGTERM to its group, a bounded wait, then SIGKILL) before the suite-wide
orphan net looks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.incident.children import Child, Children, child_env, free_port, wait_healthy

__all__ = ["Server", "Servers", "child_env", "free_port", "get_json", "run_module"]

# Bounds a run that should end in milliseconds; a hang fails instead of stalling the suite.
EXIT_SECONDS = 10.0


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Server:
    """One server process started by a test."""

    name: str
    port: int
    child: Child
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def output(self) -> str:
        return self.child.output()

    def wait_ready(self) -> dict[str, Any]:
        """Poll ``/healthz`` until it answers (fails at once if the server exits)."""
        self.health = wait_healthy(self.child, self.port)
        return self.health

    def signal_stop(self) -> None:
        """SIGTERM to the server's whole process group (it leads its own session)."""
        self.child.signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Reap the server; SIGKILL its group if it outstays the harness's stop bound."""
        self.child.wait()

    def stop(self) -> None:
        self.signal_stop()
        self.wait_stopped()


class Servers:
    """Starts servers for one test and stops every one of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.children = Children(tmp_path)

    def start(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        wait: bool = True,
        module: str | None = None,
    ) -> Server:
        """Start ``python -m services.NAME --port PORT`` (or ``module``) in ``tmp_path``."""
        port = port or free_port()
        argv = [sys.executable, "-m", module or f"services.{name}", "--port", str(port)]
        label = f"{name}-{port}-{len(self.children.started)}"
        server = Server(name, port, self.children.start(label, argv, child_env(env), self.tmp_path))
        if wait:
            server.wait_ready()
        return server

    def stop_all(self) -> None:
        """Stop every server started here, signalling all first so they stop together."""
        self.children.stop_all()


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
