"""How long one probe attempt takes against the reference MCP servers, run by hand:

    .venv/bin/python bench/probe_latency.py [--attempts 200]

Starts `services.math`, `services.trade` and `services.price` (cold, on free loopback
ports), waits until each answers `/healthz`, then times `--attempts` sequential attempts
of each probe the supervisor can run against them, with the supervisor's own probe code:
`tcp` (connect), `http` (GET /healthz), `mcp` readiness (initialize, initialized,
tools/list) and `mcp` liveness (ping). Prints the median, 95th percentile and maximum in
milliseconds per server and probe. Every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from supervisor.runtime import mcp
from supervisor.runtime.probes import http_get_status

SERVERS = ("math", "trade", "price")
READY_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(name: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "SIGNATURE": "bench",
        "TODAY_DATE": "2025-10-02",
        "DATA_DIR": str(data),
    }
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"want port {port} healthy, not after {READY_SECONDS:g} s"
                ) from None
            time.sleep(0.05)


async def time_attempts(attempt: Callable[[], Awaitable[object]], count: int) -> list[float]:
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        await attempt()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


async def connect(port: int) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.aclose()


async def measure(ports: dict[str, int], attempts: int) -> None:
    print(f"{'server':<7} {'probe':<12} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for name, port in ports.items():
        url = f"http://127.0.0.1:{port}/mcp"
        probes: dict[str, Callable[[], Awaitable[object]]] = {
            "tcp": lambda port=port: connect(port),
            "http": lambda port=port: http_get_status("127.0.0.1", port, "/healthz"),
            "mcp ready": lambda url=url: mcp.list_tools(url),
            "mcp live": lambda url=url: mcp.ping(url),
        }
        for probe, attempt in probes.items():
            await attempt()  # warm: the first request of a server pays its lazy imports
            durations = sorted(await time_attempts(attempt, attempts))
            p95 = durations[int(len(durations) * 0.95) - 1]
            median = statistics.median(durations)
            print(f"{name:<7} {probe:<12} {median:>10.2f} {p95:>8.2f} {durations[-1]:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        ports = {name: free_port() for name in SERVERS}
        procs = [start(name, port, Path(data)) for name, port in ports.items()]
        try:
            for port in ports.values():
                wait_healthy(port)
            anyio.run(measure, ports, args.attempts)
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


if __name__ == "__main__":
    main()
