"""The benchmark's service: a tiny TCP server that stands in for an import-heavy one.

It sleeps `--delay` seconds (an import-heavy server's start-up), optionally starts one
grandchild, then listens on 127.0.0.1:`--port` and answers every connection with one
line and closes it:

    <pid> <boot id> <SIGNATURE or -> <grandchild pid or 0>

The boot id is new on every start, so a caller tells a restarted instance from the old
one even if the pid were reused. SIGTERM ends it at once (the default action). It never
outlives `--lifetime` seconds, so a benchmark that is itself killed -9 cannot leave it
running for long. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

DEFAULT_DELAY = 0.2  # the "import" time before the port is bound
DEFAULT_LIFETIME = 1800.0  # last-resort bound on how long any instance lives
GRANDCHILD_ROLE = "grandchild"  # BENCH_ROLE of the grandchild, so the bench can tell it apart


def _start_grandchild(mode: str, lifetime: float) -> int:
    """A non-Python grandchild (sleep) that carries the inherited environment; in this
    process group, or (`session`) in a session of its own, as a daemonising worker would."""
    env = {**os.environ, "BENCH_ROLE": GRANDCHILD_ROLE}
    child = subprocess.Popen(
        ["sleep", str(int(lifetime))],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=mode == "session",
    )
    return child.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY)
    parser.add_argument("--grandchild", choices=["none", "group", "session"], default="none")
    parser.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME)
    args = parser.parse_args()

    boot = os.urandom(6).hex()
    signature = os.environ.get("SIGNATURE") or "-"
    time.sleep(args.delay)
    grandchild = 0
    if args.grandchild != "none":
        grandchild = _start_grandchild(args.grandchild, args.lifetime)
    server = socket.create_server(("127.0.0.1", args.port), backlog=64)
    answer = f"{os.getpid()} {boot} {signature} {grandchild}\n".encode()
    print(f"listening on 127.0.0.1:{args.port} boot {boot}", flush=True)
    deadline = time.monotonic() + args.lifetime
    while (left := deadline - time.monotonic()) > 0:
        server.settimeout(left)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            break
        with conn:
            try:
                conn.sendall(answer)
            except OSError:
                continue  # the caller only checked that the port accepts
    return 0


if __name__ == "__main__":
    sys.exit(main())
