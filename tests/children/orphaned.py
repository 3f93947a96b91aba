"""Spawns `sleep 60` with the supervisor's `spawn`, prints its pid, and exits without
stopping it once `sleep` runs: the kernel's parent-death signal must end it. (Through
the wrapper the signal is armed when `setpriv` execs the command; a supervisor killed
in the millisecond before that is covered by the guard's sweep of its marker.)

Usage: python -m tests.children.orphaned wrapper|preexec
"""

from __future__ import annotations

import os
import sys
import time

from supervisor.osproc import spawn as spawning

if __name__ == "__main__":
    if sys.argv[1] == "preexec":
        spawning._wrapper = ()  # as where setpriv cannot set it
    elif not spawning._pdeathsig_wrapper():
        print("no-wrapper", flush=True)
        os._exit(0)
    child = spawning.spawn(["sleep", "60"], dict(os.environ), os.getcwd(), reaper=spawning.Reaper())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/cmdline", "rb") as handle:
            if handle.read().startswith(b"sleep\0"):
                break
        time.sleep(0.001)
    print(child.pid, flush=True)
    os._exit(0)
