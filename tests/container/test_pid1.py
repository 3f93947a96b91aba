"""supervise as PID 1 of a PID namespace, as in a container: it adopts orphaned
grandchildren, reaps them when they exit (no zombie is left), and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import psutil

from scripts.incident.children import child_env, poll
from scripts.incident.supervised import JsonLog
from tests.container.namespace import as_pid_one, require_pid_namespaces

ORPHANS = 8
# Spawning a few processes and reaping them: milliseconds; generous for a loaded CI.
ORPHAN_SECONDS = 30.0

# The unit: for each orphan, a middle process forks it and exits at once, so the orphan
# is adopted (by PID 1 here); the orphan waits until its parent is gone (a pidfd of the
# middle process turns readable only after its children were handed over), reports its
# pid and new parent on a pipe, and exits. The unit reads the pipe to its end — every
# orphan has exited then — prints what it learned, and stays up.
UNIT = f"""
import os, select, signal
read, write = os.pipe()
for _ in range({ORPHANS}):
    middle = os.fork()
    if middle == 0:
        me = os.getpid()
        if os.fork() == 0:
            os.close(read)
            try:
                gone = os.pidfd_open(me)
            except ProcessLookupError:
                pass
            else:
                select.select([gone], [], [])
            os.write(write, f"{{os.getpid()}} {{os.getppid()}}\\n".encode())
            os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)
os.close(write)
data = b""
while chunk := os.read(read, 4096):
    data += chunk
pairs = [line.split() for line in data.decode().splitlines()]
parents = sorted({{int(parent) for _, parent in pairs}})
print("orphans", [int(pid) for pid, _ in pairs], "adopted by", parents, flush=True)
signal.pause()
"""


def test_supervise_as_pid_1_reaps_the_orphans_it_adopts_and_exits_0_on_sigterm(
    tmp_path: Path,
) -> None:
    require_pid_namespaces()
    unit = tmp_path / "orphans.py"
    unit.write_text(UNIT)
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        "[processes.orphans]\n"
        f"command = {json.dumps([sys.executable, str(unit)])}\n"
        'ready = { log = "^orphans " }\n'
        'restart = "never"\n'
    )
    argv = [sys.executable, "-m", "supervisor", "run", "-c", str(stack), "--log-format", "json"]

    with as_pid_one(argv, child_env({}), tmp_path, tmp_path / "supervise.log") as init:
        log = JsonLog(init.log)

        def report() -> tuple[str | None, str]:
            lines = [r.get("line", "") for r in log.read() if r.get("unit") == "orphans"]
            found = next((line for line in lines if line.startswith("orphans ")), None)
            return found, f"{len(log.records)} records:\n{init.output()[-2000:]}"

        line = poll("the unit's report on its orphans", report, ORPHAN_SECONDS)
        parsed = re.fullmatch(r"orphans \[([\d, ]+)\] adopted by \[(\d+)\]", line)
        assert parsed is not None, line
        orphans = {int(pid) for pid in parsed.group(1).split(", ")}
        namespace_pids = init.namespace_pids()

        def reaped() -> tuple[bool | None, str]:
            left = []
            for child in psutil.Process(init.pid).children():
                try:
                    status = Path(f"/proc/{child.pid}/status").read_text()
                    inner = int(re.findall(r"^NSpid:.*\s(\d+)$", status, re.M)[0])
                    state = child.status()
                except (OSError, IndexError, psutil.Error):
                    continue  # gone between the listing and the look: reaped
                if inner in orphans:
                    left.append(f"{inner} ({state})")
            return (True if not left else None), f"orphans still there: {left}"

        reaped_all = poll("every adopted orphan reaped by PID 1", reaped, ORPHAN_SECONDS)
        init.signal(signal.SIGTERM)
        code = init.wait()

    assert namespace_pids[-1] == 1  # supervise really was PID 1 of its namespace
    assert len(orphans) == ORPHANS
    assert int(parsed.group(2)) == 1  # every orphan's new parent was PID 1: supervise
    assert reaped_all
    assert code == 0, init.output()[-3000:]
