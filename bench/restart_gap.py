"""The gap a restart leaves: how long no instance of a server answers, run by hand:

    .venv/bin/python bench/restart_gap.py [--restarts 10] [--delay 0.2]

One model, one server (stdlib; sleeps --delay like an import-heavy server, then
answers every connection with its pid and SIGNATURE; SIGTERM makes it stop accepting
and exit), under `supervise run` in three ways, side by side in the same run:

- plain: the server binds its port itself (socket = false);
- held: the supervisor holds the listening socket (socket = true), one instance at a time;
- overlap: socket = true and overlap = true.

A client connects in a loop (one connection at a time, 1 ms apart) while the benchmark
changes the model's SIGNATURE with `supervise set` --restarts times. For each restart:
the longest time between two answers (the gap, less the loop's own period), the longest
wait of one connection, and how many connections were refused or cut. The control is the
same window around a `supervise status` that restarts nothing: the client's own jitter
on a busy machine, which an overlapping restart should not exceed. Prints medians
(min–max) per mode. Everything listens on 127.0.0.1; every process started carries a
token and is killed by pid at the end; the run fails if any is left.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_figures import ROOT, TOKEN, marked_pids, wait_ready

SUPERVISE = [sys.executable, "-m", "supervisor"]  # bench/run.py passes its own

SERVER = """
import os, signal, socket, sys, time
time.sleep(float(os.environ["DELAY"]))
if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = socket.socket(fileno=3)
else:
    server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
stopping = []
signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
server.settimeout(0.05)
print("listening", flush=True)
while not stopping:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        continue
    with conn:
        conn.sendall(f"{os.getpid()} {os.environ['SIGNATURE']}\\n".encode())
"""
MODES = {
    "plain": "",
    "held": "socket = true",
    "overlap": "socket = true\noverlap = true",
}
PERIOD = 0.001  # between the client's connections


def stack_text(server: Path, delay: float, extra: str) -> str:
    return f"""
[models.m]
SIGNATURE = "v0"
[processes.svc]
per_model = true
command = ["{sys.executable}", "-S", "{server}"]
port = "auto"
inject = ["SIGNATURE"]
ready = {{ log = "^listening", interval = 0.01 }}
env = {{ DELAY = "{delay}" }}
{extra}
"""


def start(stack: Path, base: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*base, "run", "-c", str(stack), "--log-format", "json"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, TOKEN: "1"},
        cwd=stack.parent,  # not the checkout: `supervisor` is imported from `base`'s path
        start_new_session=True,
    )


def cli(base: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*base, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env, TOKEN: "1"},
        cwd=tempfile.gettempdir(),
    )


class Hammer:
    """Connects in a loop and records (start, end, ok) for every connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.records: list[tuple[float, float, bool]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
                    ok = bool(conn.makefile().readline().strip())
            except OSError:
                ok = False
            self.records.append((t0, time.monotonic(), ok))
            time.sleep(PERIOD)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)


def measure(hammer: Hammer, t0: float, t1: float) -> dict[str, float]:
    """The figures of one restart: connections that started in [t0, t1]."""
    window = [r for r in hammer.records if t0 <= r[0] <= t1]
    answers = [end for _, end, ok in window if ok]
    gaps = [b - a for a, b in itertools.pairwise(answers)]
    return {
        "gap": max(gaps, default=t1 - t0),
        "wait": max((end - start for start, end, ok in window if ok), default=0.0),
        "failed": sum(1 for *_, ok in window if not ok),
        "connections": len(window),
    }


def run_mode(
    work: Path,
    mode: str,
    server: Path,
    restarts: int,
    delay: float,
    base: list[str],
    env: dict[str, str],
) -> dict[str, list]:
    directory = work / mode
    directory.mkdir()
    stack = directory / "supervise.toml"
    stack.write_text(stack_text(server, delay, MODES[mode]))
    proc = start(stack, base, env)
    figures: dict[str, list] = {
        "gap": [],
        "wait": [],
        "failed": [],
        "set": [],
        "period": [],
        "control_gap": [],
        "control_wait": [],
    }
    try:
        wait_ready(proc, 1, time.monotonic() + 60)
        status = cli(base, env, "status", "--json", "-c", str(stack))
        port = next(u["port"] for u in json.loads(status.stdout)["units"])
        hammer = Hammer(port)
        try:
            time.sleep(0.3)
            steady = [b[1] - a[1] for a, b in itertools.pairwise(hammer.records)]
            period = statistics.median(steady) if steady else PERIOD
            for i in range(restarts):
                t0 = time.monotonic()
                result = cli(base, env, "set", "m", f"SIGNATURE=v{i + 1}", "-c", str(stack))
                t1 = time.monotonic()
                if result.returncode != 0:
                    raise RuntimeError(f"{mode}: set failed: {result.stderr}")
                time.sleep(0.2)  # connections queued during the restart are answered
                one = measure(hammer, t0, t1 + 0.1)
                figures["gap"].append(max(0.0, one["gap"] - period))
                figures["wait"].append(one["wait"])
                figures["failed"].append(one["failed"])
                figures["set"].append(t1 - t0)
                figures["period"].append(period)
                # The control: the same window around a CLI call that restarts nothing
                # (`status`), so the client's own jitter on a busy machine is known.
                t0 = time.monotonic()
                cli(base, env, "status", "-c", str(stack))
                time.sleep(max(0.0, figures["set"][-1] - (time.monotonic() - t0)))
                t1 = time.monotonic()
                time.sleep(0.2)
                one = measure(hammer, t0, t1 + 0.1)
                figures["control_gap"].append(max(0.0, one["gap"] - period))
                figures["control_wait"].append(one["wait"])
        finally:
            hammer.stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    return figures


def spread(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    med = statistics.median(values) * scale
    return f"{med:.1f} {unit} ({min(values) * scale:.1f}–{max(values) * scale:.1f})"


def measure_all(
    restarts: int = 10,
    delay: float = 0.2,
    base: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, dict[str, list]]:
    """Every mode's figures (one list per figure, one entry per restart), and the
    control's under "control"."""
    work = Path(tempfile.mkdtemp(prefix="supervise-gap-"))
    server = work / "server.py"
    server.write_text(SERVER)
    results: dict[str, dict[str, list]] = {}
    try:
        for mode in MODES:
            results[mode] = run_mode(
                work, mode, server, restarts, delay, base or SUPERVISE, env or {}
            )
    finally:
        for pid in marked_pids():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    results["control"] = {
        "gap": [g for mode in MODES for g in results[mode]["control_gap"]],
        "wait": [w for mode in MODES for w in results[mode]["control_wait"]],
    }
    return results


def table(results: dict[str, dict[str, list]]) -> list[str]:
    lines = [
        "medians (min–max) per restart; gap = longest time between two answers less the",
        "client's own period between connections",
        f"{'mode':<9} {'gap':>22} {'longest wait':>22} {'refused/cut':>13} {'set returned':>22}",
    ]
    for mode in MODES:
        fig = results[mode]
        lines.append(
            f"{mode:<9} {spread(fig['gap']):>22} {spread(fig['wait']):>22} "
            f"{sum(fig['failed']):>13} {spread(fig['set'], 1.0, 's'):>22}"
        )
    control = results["control"]
    lines.append(
        f"{'control':<9} {spread(control['gap']):>22} {spread(control['wait']):>22} "
        f"{'':>13} {'(status, no restart)':>22}"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.2, help="the server's start-up (s)")
    args = parser.parse_args()
    results = measure_all(args.restarts, args.delay)
    print(
        f"{args.restarts} restarts per mode, server start-up {args.delay:g} s, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, supervise from {ROOT}"
    )
    print("\n".join(table(results)))
    ratio = statistics.median(results["overlap"]["gap"]) / max(
        statistics.median(results["control"]["gap"]), 1e-6
    )
    print(f"overlap gap / control gap: {ratio:.2f}x (1.0: no gap beyond the client's own jitter)")
    left = marked_pids()
    if left:
        print(f"LEFT BEHIND: {left}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
