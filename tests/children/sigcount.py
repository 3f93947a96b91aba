"""A unit that writes `PID up` to `$SIGLOG` at start and one line per stop signal it
receives (`PID SIGNAL`),
and has two descendants doing the same: one in its process group, one in a session of
its own. Each process ends `$SIGLINGER` s (0.3 by default) after its first signal, so
a repeated signal is seen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ended_at: list[float] = []


def counted(signum: int, frame: object) -> None:
    with open(os.environ["SIGLOG"], "a") as log:
        log.write(f"{os.getpid()} {signal.Signals(signum).name}\n")
    ended_at.append(time.monotonic() + float(os.environ.get("SIGLINGER", "0.3")))


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, counted)
    role = sys.argv[1] if len(sys.argv) > 1 else "leader"
    children = []
    if role == "leader":
        me = [sys.executable, __file__]
        children.append(subprocess.Popen([*me, "group"]))
        children.append(subprocess.Popen([*me, "session"], start_new_session=True))
    with open(os.environ["SIGLOG"], "a") as log:
        log.write(f"{os.getpid()} up\n")
    while not ended_at or time.monotonic() < ended_at[0]:
        time.sleep(0.02)
    for child in children:
        child.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
