"""A service whose behaviour is its model's MODE key: `ok` serves TCP on $PORT (one line
per connection: unit, pid, MODE); `exit78` reports a configuration error and exits 78;
`crash` exits 3 at once; `hang` never listens (its probe never passes); `escape` serves
like `ok` after starting a daemon that calls setsid without exec (double fork) and
records its pid in $OUT/<unit>.escaper."""

from __future__ import annotations

import os
import socket
import sys
import time

mode = os.environ.get("MODE", "ok")
unit = os.environ["SUPERVISE_UNIT"]
if mode == "exit78":
    print(f"moody: MODE {mode!r} is not supported", file=sys.stderr, flush=True)
    sys.exit(78)
if mode == "crash":
    sys.exit(3)
if mode == "hang":
    time.sleep(3600)
if mode == "escape":
    # A daemon the classic way, without exec: fork, setsid, fork again, and the middle
    # process exits, so the daemon is reparented away from the unit's tree.
    path = os.path.join(os.environ["OUT"], unit.replace("/", "@") + ".escaper")
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            with open(path + ".tmp", "w") as handle:
                handle.write(str(os.getpid()))
            os.rename(path + ".tmp", path)
            time.sleep(3600)
        os._exit(0)
    os.waitpid(middle, 0)
server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.sendall(f"{unit} {os.getpid()} {mode}\n".encode())
