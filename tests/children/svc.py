"""A configurable test unit: a real process that does what a test needs of a service.

Options (in this order of effect): --dump DIR writes the environment as JSON to
DIR/<unit>.json; --publish K=V appends to $SUPERVISE_ENV; --stderr TEXT prints a line to
stderr; --flood N writes N bytes to stdout without a newline; --tree setsid|group starts a
grandchild (in a new session, or in this process group) that ignores SIGTERM and records
its pid in DIR/<unit>.grandchild; --ignore-term ignores SIGTERM; --listen serves TCP on
$PORT after --delay S (answers one line: unit pid SIGNATURE; SIGTERM ends it gracefully,
answering the connection it took); --exit CODE exits with
CODE after --sleep S.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

GRANDCHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('gc up', flush=True); time.sleep(3600)"
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dump")
    parser.add_argument("--publish", action="append", default=[])
    parser.add_argument("--stderr")
    parser.add_argument("--flood", type=int, default=0)
    parser.add_argument("--tree", choices=["setsid", "group"])
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--sleep", type=float, default=3600.0)
    parser.add_argument("--exit", type=int, default=None)
    args = parser.parse_args()
    unit = os.environ.get("SUPERVISE_UNIT", "unit").replace("/", "@")
    if args.dump:
        with open(os.path.join(args.dump, f"{unit}.json"), "w") as handle:
            json.dump(dict(os.environ), handle)
    for pair in args.publish:
        with open(os.environ["SUPERVISE_ENV"], "a") as handle:
            handle.write(pair + "\n")
    if args.stderr:
        print(args.stderr, file=sys.stderr, flush=True)
    if args.flood:
        chunk = b"x" * 65536
        left = args.flood
        while left > 0:
            left -= os.write(1, chunk[: min(left, len(chunk))])
        os.write(1, b"\nflood done\n")
    if args.tree:
        child = subprocess.Popen(
            [sys.executable, "-c", GRANDCHILD],
            start_new_session=args.tree == "setsid",
        )
        if args.dump:
            with open(os.path.join(args.dump, f"{unit}.grandchild"), "w") as handle:
                handle.write(str(child.pid))
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"up {os.getpid()}", flush=True)
    if args.listen:
        time.sleep(args.delay)  # an import-heavy server takes this long to listen
        if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS"):
            server = socket.socket(fileno=3)  # handed down by the supervisor
        else:
            server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
        print("listening", flush=True)
        # Like a real server, SIGTERM stops it accepting; a connection it took is answered.
        stopping: list[int] = []
        if not args.ignore_term:
            signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        server.settimeout(0.1)
        deadline = time.monotonic() + args.sleep
        while time.monotonic() < deadline and not stopping:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                unit_name = os.environ.get("SUPERVISE_UNIT")
                signature = os.environ.get("SIGNATURE")
                conn.sendall(f"{unit_name} {os.getpid()} {signature}\n".encode())
    else:
        time.sleep(args.sleep)
    return args.exit if args.exit is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
