"""Stops one unit's process tree with the supervisor's own functions, in a process of
its own (it becomes a child subreaper, which a test process must not).

The unit (a shell) starts: a child in its group; a grandchild that called `setsid`
under a living parent; and a daemon that called `setsid` and whose parent exited, so
that it was reparented to this process. Each writes its pid to DIR. Prints one JSON
line: the pids expected, the members found by walking the tree (where the kernel lists
children) and by scanning /proc, and the processes still alive after `stop_tree`.

Usage: python -m tests.children.trees DIR
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio

from supervisor.osproc import procfs, tree
from supervisor.osproc.spawn import Reaper, become_subreaper, spawn

SCRIPT = """
sleep 60 & echo $! > "$DIR/group"
setsid sh -c 'echo $$ > "$DIR/session"; exec sleep 60' &
sh -c 'setsid sh -c "echo \\$\\$ > \\"$DIR/daemon\\"; exec sleep 60" & exit 0'
exec sleep 60
"""
WAIT = 10.0


def _wait_for(directory: Path, names: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            return {name: int((directory / name).read_text()) for name in names}
        except (OSError, ValueError):
            time.sleep(0.02)
    raise SystemExit(f"the tree did not start within {WAIT} s")


async def main(directory: Path) -> dict[str, object]:
    become_subreaper()
    reaper = Reaper()
    marker = f"SUPERVISE_ENV={directory / 'unit.env'}"
    env = {**os.environ, "DIR": str(directory), "SUPERVISE_ENV": str(directory / "unit.env")}
    async with anyio.create_task_group() as tg:
        tg.start_soon(reaper.run)
        child = spawn(["sh", "-c", SCRIPT], env, str(directory), reaper=reaper)
        pids = _wait_for(directory, ["group", "session", "daemon"])
        expected = sorted([child.pid, *pids.values()])
        # The daemon's parent has exited once the daemon is adopted here.
        deadline = time.monotonic() + WAIT
        while (stat := procfs.read_stat(pids["daemon"])) and stat.ppid != os.getpid():
            if time.monotonic() > deadline:
                raise SystemExit("the daemon was not adopted")
            await anyio.sleep(0.02)
        walked = sorted(p.pid for p in tree.members(child.pid, marker.encode()))
        lists_children = procfs.LISTS_CHILDREN
        procfs.LISTS_CHILDREN = False
        scanned = sorted(p.pid for p in tree.members(child.pid, marker.encode()))
        procfs.LISTS_CHILDREN = lists_children
        killed = await tree.stop_tree(child.pid, marker.encode(), signal.SIGTERM, 5.0, child.exited)
        alive = [pid for pid in expected if procfs.alive(pid)]
        tg.cancel_scope.cancel()
    return {
        "expected": expected,
        "walked": walked if lists_children else None,
        "scanned": scanned,
        "killed": killed,
        "alive": alive,
    }


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, Path(sys.argv[1]))), flush=True)
