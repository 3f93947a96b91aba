"""Memory of the whole two-model reference stack (supervisor + every unit), run by hand:

    .venv/bin/python bench/stack_memory.py [--samples 5]

Runs the repository's supervise.toml twice, as it is (servers and agents forked from one
warm interpreter, `preload`) and with every `preload` line removed (each a cold
interpreter), and samples, while every server and agent is up, the sum of RSS and of PSS
over the supervisor and all its descendants (at moments when every server and agent is
running, between the agents' daily restarts). RSS counts a page shared by N processes N
times; PSS divides it among them, and is what a container's memory limit (Render's 512 MB
instance) actually charges. Prints medians (min–max) of each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
UP = ("alpha/trade", "alpha/price", "alpha/agent", "beta/trade", "beta/price", "beta/agent", "math")


def measure(stack: Path, samples: int) -> tuple[list[float], list[float], int]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATA_DIR": str(stack.parent / "disk"),
        "DAYS": "29",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "-c", str(stack)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    rss, pss, count = [], [], 0
    deadline = time.monotonic() + 120
    try:
        while len(rss) < samples and time.monotonic() < deadline:
            status = subprocess.run(
                [sys.executable, "-m", "supervisor", "status", "--json", "-c", str(stack)],
                capture_output=True,
                text=True,
                env=env,
            )
            if status.returncode != 0:
                time.sleep(0.1)
                continue
            units = {u["unit"]: u for u in json.loads(status.stdout)["units"]}
            if not all(units.get(n, {}).get("state") == "running" for n in UP):
                time.sleep(0.02)
                continue
            root = psutil.Process(proc.pid)
            total_rss = total_pss = 0
            procs = [root, *root.children(recursive=True)]
            for p in procs:
                try:
                    info = p.memory_full_info()
                except psutil.Error:
                    continue
                total_rss += info.rss
                total_pss += info.pss
            rss.append(total_rss / MIB)
            pss.append(total_pss / MIB)
            count = len(procs)
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    if not rss:
        raise RuntimeError(f"{stack}: the stack never had every unit up")
    return rss, pss, count


def span(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} MiB ({min(values):.1f}–{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="supervise-mem-"))
    try:
        layouts = {}
        text = (ROOT / "supervise.toml").read_text()
        for name, body in (
            ("warm (preload)", text),
            ("cold", re.sub(r"^preload = .*\n", "", text, flags=re.M)),
        ):
            directory = work / name.split()[0]
            directory.mkdir()
            (directory / "supervise.toml").write_text(body)
            layouts[name] = measure(directory / "supervise.toml", args.samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"two-model reference stack, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    for name, (rss, pss, count) in layouts.items():
        print(f"{name:15} {count:2d} processes  RSS sum {span(rss)}  PSS sum {span(pss)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
