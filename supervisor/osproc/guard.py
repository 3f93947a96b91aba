"""The guard: a tiny process that outlives a killed supervisor and ends its units.

The supervisor starts it before any unit and keeps the write end of its stdin. Units die
with the supervisor's thread through their parent-death signal, but their descendants do
not; when the pipe reaches end-of-file — the supervisor exited, however it exited — the
guard SIGKILLs every process whose environment carries a marker under the supervisor's
private runtime directory and every session the supervisor registered (lines `+SID` /
`-SID` on the pipe), until none is left. Standard library only: it must start fast.

Run as: python -S -I path/to/guard.py MARKER (standard library only, so no site-packages)
"""

from __future__ import annotations

import os
import signal
import sys
import time

PATIENCE = 3.0  # seconds of sweeping before giving up on unkillable processes
SWEEP_INTERVAL = 0.01


def _members(sessions: set[int], marker: bytes) -> list[int]:
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                raw = handle.read()
            fields = raw[raw.rindex(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):
                continue
            if int(fields[3]) in sessions:
                found.append(int(entry))
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if any(var.startswith(marker) for var in handle.read().split(b"\0")):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def sweep(sessions: set[int], marker: bytes) -> int:
    """SIGKILL everything that belongs to the stack until nothing does; returns how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        pids = _members(sessions, marker)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                continue
        time.sleep(SWEEP_INTERVAL)
    return len(killed)


def main() -> int:
    marker = sys.argv[1].encode()
    # Ctrl-C and a closed terminal are for the supervisor; the guard ends on end-of-file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sessions: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip()
        if text[:1] == b"+":
            sessions.add(int(text[1:]))
        elif text[:1] == b"-":
            sessions.discard(int(text[1:]))
    killed = sweep(sessions, marker)
    if killed:
        print(
            f"supervise guard: killed {killed} process(es) left by the supervisor", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
