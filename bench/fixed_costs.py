"""What every `supervise run` pays before its first unit starts, layer by layer, run by hand:

    .venv/bin/python bench/fixed_costs.py [--repeats 15] [--n 10]

Each row is a fresh interpreter that does one step more than the row above (the last
two rows are the supervisor's own steps: the validation its child does, the runtime the
parent imports). Rows are run interleaved, in a shuffled order every repeat. Prints the
wall time from spawn to exit (median, min–max) and the process's RSS at the end. These
are the floors `bench/run.py`'s cold start and memory figures sit on: the interpreter,
the event loop and the validation library are costs of the chosen stack, paid before
any unit can start (an invalid stack must start nothing) and for as long as it runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import Service, ServiceArgs, Supervise

ROOT = Path(__file__).resolve().parent.parent

RSS = "\nprint(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
LOOP = "import anyio\nasync def _noop(): pass\nanyio.run(_noop)\n"
RUNTIME = (
    "from supervisor.control.server import serve_control, serve_health\n"
    "from supervisor.runtime.live import LiveConfig\n"
    "from supervisor.runtime.signals import handle_signals\n"
    "from supervisor.runtime.supervisor import Supervisor\n"
    "from supervisor.runtime.watch import watch_stack_files\n"
    "from supervisor.cli import _preload_while_validating\n"
    "_preload_while_validating()\n"
)

STEPS: dict[str, str] = {
    "interpreter (python -c pass)": "pass",
    "+ asyncio": "import asyncio",
    "+ anyio.run of a no-op": LOOP,
    "+ h11, watchfiles (the run-time libraries)": LOOP + "import h11, watchfiles",
    "pydantic: import + one model validated": (
        "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nM(x=1)"
    ),
    "supervise: validation of the stack (the child)": (
        "import os, sys\nfrom pathlib import Path\nfrom supervisor.check import load_checked\n"
        "load_checked(Path(sys.argv[1]), os.environ)"
    ),
    "supervise: runtime imported + anyio.run (the parent)": RUNTIME + LOOP,
}


def stack_file(directory: Path, n: int) -> Path:
    """The stack `bench/run.py` starts at N = n (its services are never run here)."""
    services = [Service(i, 42000 + i, f"s{i}") for i in range(n)]
    tool = Supervise(directory, services, ServiceArgs(0.2, "none", 600))
    tool.write_config()
    return tool.stack


def run_step(code: str, stack: Path) -> tuple[float, int]:
    """Seconds from spawn to exit of a fresh interpreter running `code`, and its RSS in
    KiB at the end (read from /proc with no import, so the step costs what it says)."""
    argv = [sys.executable, "-c", code + RSS, str(stack)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--n", type=int, default=10, help="models in the validated stack")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in STEPS}
    rss: dict[str, list[int]] = {name: [] for name in STEPS}
    with tempfile.TemporaryDirectory(prefix="fixed-costs-") as tmp:
        stack = stack_file(Path(tmp), args.n)
        for _ in range(args.repeats):
            order = list(STEPS)
            random.shuffle(order)
            for name in order:
                elapsed, peak = run_step(STEPS[name], stack)
                times[name].append(elapsed)
                rss[name].append(peak)
    print(f"{args.repeats} repeats, stack of {args.n} models; Python {sys.version.split()[0]}")
    print(f"{'step':55} {'wall ms: median (min–max)':>28} {'RSS MiB':>8}")
    for name in STEPS:
        ms = [t * 1000 for t in times[name]]
        wall = f"{statistics.median(ms):.0f} ({min(ms):.0f}–{max(ms):.0f})"
        print(f"{name:55} {wall:>28} {statistics.median(rss[name]) / 1024:8.1f}")


if __name__ == "__main__":
    main()
