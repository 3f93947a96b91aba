"""Figures for the core and the control plane, run by hand:

    .venv/bin/python bench/core_figures.py [--units 50] [--repeats 5]

- spawn → all ready: `supervise run` of N TCP units (ready = tcp probe), from exec of the
  supervisor to the last unit's ready event;
- `kill -9` of the supervisor → every unit and grandchild gone;
- `supervise status` latency with N units;
- `supervise set` round trip for a unit whose server takes 0.2 s to listen, against a
  baseline of the same server started by hand and polled until it accepts.

Prints medians (min–max). Everything listens on 127.0.0.1; every process started is
killed by pid at the end, and the run fails loudly if any is left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = """
import os, socket, subprocess, sys, time
time.sleep(float(os.environ.get("DELAY", "0")))
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # a grandchild
server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()} {os.environ.get('SIGNATURE')}\\n".encode())
    conn.close()
"""
TOKEN = f"BENCH_TOKEN_{os.getpid()}"


def stack_text(units: int, service: Path, delay: float) -> str:
    lines = ["[supervise]", "coalesce = 0.0"]
    for i in range(units):
        lines += [f"[models.m{i}]", f'SIGNATURE = "m{i}-v1"']
    lines += [
        "[processes.svc]",
        "per_model = true",
        f'command = ["{sys.executable}", "{service}"]',
        'port = "auto"',
        'inject = ["SIGNATURE"]',
        'ready = { tcp = "${port}", interval = 0.02 }',
        f'env = {{ DELAY = "{delay}" }}',
    ]
    return "\n".join(lines) + "\n"


def marked_pids() -> list[int]:
    needle = f"{TOKEN}=1".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                stat = Path(f"/proc/{entry}/stat").read_bytes()
                if stat[stat.rindex(b")") + 2 :][:1] not in (b"Z", b"X"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def start(stack: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "-c", str(stack), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env={**os.environ, TOKEN: "1"},
        start_new_session=True,
    )


def wait_ready(proc: subprocess.Popen[str], units: int, deadline: float) -> None:
    ready: set[str] = set()
    assert proc.stdout is not None
    for line in proc.stdout:
        record = json.loads(line)
        if record.get("event") == "running" and record.get("ready"):
            ready.add(record["unit"])
            if len(ready) == units:
                return
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"only {len(ready)} of {units} units ready")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, TOKEN: "1"},
    )


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.makefile().readline().strip()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def warm_vs_cold(work: Path, repeats: int) -> tuple[list[float], list[float]]:
    """`set` → ready for a unit with a 0.6 s import, cold and warm (`preload`), the two
    stacks running side by side and the sets interleaved."""
    out = work / "warm-out"
    out.mkdir(exist_ok=True)
    runs = {}
    for kind in ("cold", "warm"):
        directory = work / kind
        directory.mkdir(exist_ok=True)
        preload = 'preload = ["tests.children.warm.heavy"]' if kind == "warm" else ""
        stack = directory / "supervise.toml"
        stack.write_text(f"""
[supervise]
coalesce = 0.0
[models.m]
SIGNATURE = "v0"
[processes.server]
per_model = true
command = "{sys.executable} -m tests.children.warm.server {out}"
cwd = "{ROOT}"
port = "auto"
inject = ["SIGNATURE"]
ready = {{ log = "^listening", interval = 0.01 }}
{preload}
""")
        proc = start(stack)
        wait_ready(proc, 1, time.monotonic() + 60)
        runs[kind] = (stack, proc)
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    try:
        for i in range(repeats * 2):
            for kind in ("cold", "warm") if i % 2 else ("warm", "cold"):
                stack, _ = runs[kind]
                t0 = time.monotonic()
                result = cli("set", "m", f"SIGNATURE=v{i + 1}", "-c", str(stack))
                times[kind].append(time.monotonic() - t0)
                assert result.returncode == 0, result.stderr
    finally:
        for _, proc in runs.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            assert proc.stdout is not None
            proc.stdout.close()
    return times["cold"], times["warm"]


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}–{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="supervise-bench-"))
    service = work / "service.py"
    service.write_text(SERVICE)
    stack = work / "supervise.toml"
    stack.write_text(stack_text(args.units, service, 0.0))
    cold, kill, status = [], [], []
    try:
        for _ in range(args.repeats):
            t0 = time.monotonic()
            proc = start(stack)
            wait_ready(proc, args.units, t0 + 120)
            cold.append(time.monotonic() - t0)
            for _ in range(5):
                t1 = time.monotonic()
                assert cli("status", "-c", str(stack)).returncode == 0
                status.append(time.monotonic() - t1)
            before = len(marked_pids())
            t2 = time.monotonic()
            proc.kill()
            while marked_pids():
                if time.monotonic() - t2 > 30:
                    raise RuntimeError("processes survived kill -9 of the supervisor")
                time.sleep(0.005)
            kill.append(time.monotonic() - t2)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
            print(f"  run: {before} processes (units + grandchildren + guard) cleared")

        # set round trip for a 0.2 s server, and the baseline: start it by hand, poll.
        stack.write_text(stack_text(1, service, 0.2))
        proc = start(stack)
        wait_ready(proc, 1, time.monotonic() + 60)
        port = json.loads(cli("status", "--json", "-c", str(stack)).stdout)["units"][0]["port"]
        sets, floor = [], []
        for i in range(args.repeats * 2):
            t0 = time.monotonic()
            result = cli("set", "m0", f"SIGNATURE=m0-v{i + 2}", "-c", str(stack))
            sets.append(time.monotonic() - t0)
            assert result.returncode == 0, result.stderr
            assert ask(port).split()[1] == f"m0-v{i + 2}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
        for _ in range(args.repeats * 2):
            t0 = time.monotonic()
            child = subprocess.Popen(
                [sys.executable, str(service)],
                env={**os.environ, TOKEN: "1", "PORT": str(port), "DELAY": "0.2"},
                start_new_session=True,
            )
            while not accepts(port):
                time.sleep(0.005)
            floor.append(time.monotonic() - t0)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        cold_set, warm_set = warm_vs_cold(work, args.repeats)
    finally:
        for pid in marked_pids():
            os.kill(pid, signal.SIGKILL)
    print(
        f"{args.units} units, {args.repeats} runs, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(f"spawn -> all ready          {summary(cold)}")
    print(f"kill -9 -> all gone         {summary(kill)}")
    print(f"supervise status            {summary(status)}")
    print(f"set -> ready (0.2 s server) {summary(sets)}")
    print(
        f"  baseline: spawn+poll      {summary(floor)}  ratio "
        f"{statistics.median(sets) / statistics.median(floor):.2f}x"
    )
    print(f"set -> ready, 0.6 s import, cold   {summary(cold_set)}")
    print(
        f"set -> ready, 0.6 s import, warm   {summary(warm_set)}  "
        f"{statistics.median(cold_set) / statistics.median(warm_set):.1f}x faster"
    )
    left = marked_pids()
    if left:
        print(f"LEFT BEHIND: {left}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
