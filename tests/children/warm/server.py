"""A unit run as `python -m tests.children.warm.server DIR`: imports the heavy module
(free when preloaded), dumps its environment, then serves one line per connection."""

import json
import os
import socket
import sys

import tests.children.warm.heavy  # noqa: F401  (the import cost under test)

unit = os.environ["SUPERVISE_UNIT"].replace("/", "@")
with open(os.path.join(sys.argv[1], f"{unit}.json"), "w") as handle:
    json.dump(
        {
            "environ": dict(os.environ),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "sid": os.getsid(0),
            "argv": sys.argv,
        },
        handle,
    )
if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = socket.socket(fileno=3)
else:
    server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()} {os.environ.get('SIGNATURE')}\n".encode())
    conn.close()
