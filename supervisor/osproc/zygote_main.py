"""The zygote: a warm Python interpreter that forks units with their modules preloaded.

Run as `python -m supervisor.osproc.zygote_main FD MODULE...`: it imports the modules once,
then serves fork requests on the Unix socket FD (inherited from the supervisor). A request
is one JSON line `{"id", "module", "args", "env", "cwd"}` carrying the unit's stdout and
stderr pipes (and optionally a listening socket) as SCM_RIGHTS; the zygote answers
`{"id", "pid"}` at once and `{"id", "exit"}` when that child ends (negative: a signal).

The child, before running its module as `__main__`: starts a new session, asks for
SIGKILL when the zygote dies (which itself dies with the supervisor), replaces its whole
environment with the one it was sent (nothing of another unit or model survives: the
zygote's own environment carries no model keys), changes directory, and takes the pipes
as its stdout/stderr. Standard library only, single-threaded: fork is safe here.

Marking: a forked child shares the zygote's environment *block* (what /proc/PID/environ
shows, and what every process it forks without exec inherits); `os.environ` changes
after the fork never reach it. So the zygote is started with a reserved entry,
`SUPERVISE_ENV=` followed by PLACEHOLDER_SIZE filler bytes, and each child overwrites
that entry in its own copy of the block with its unit's marker before any unit code runs.
A descendant that calls `setsid` without exec therefore carries the marker like a cold
unit's would, and the supervisor and the guard find it.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import traceback
from array import array
from typing import Any

_PR_SET_PDEATHSIG = 1
MARKER_NAME = "SUPERVISE_ENV"
PLACEHOLDER_SIZE = 4096  # room for any marker: a path under the runtime directory
PLACEHOLDER = "_" * PLACEHOLDER_SIZE
MAX_FDS = 4
MAX_MESSAGE = 1024 * 1024  # a request is an environment and a few words


def mark_environment_block(marker: bytes) -> None:
    """Overwrite the reserved `SUPERVISE_ENV=` entry of this process's environment block
    (in place, padded with NULs) with `marker`.

    Raises:
        OSError: the block has no reserved entry or it is too small.
    """
    with open("/proc/self/stat", "rb") as handle:
        raw = handle.read()
    env_start = int(raw[raw.rindex(b")") + 2 :].split()[47])  # field 50: env_start
    with open("/proc/self/environ", "rb") as handle:
        block = handle.read()
    prefix, offset = f"{MARKER_NAME}=".encode(), 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix) and entry.endswith(b"_" * 16):
            break
        offset += len(entry) + 1
    else:
        raise OSError("the zygote's environment has no reserved SUPERVISE_ENV entry")
    if len(marker) > len(entry):
        raise OSError(f"marker of {len(marker)} bytes does not fit in {len(entry)}")
    data = marker + b"\0" * (len(entry) - len(marker))
    ctypes.memmove(env_start + offset, data, len(data))


def _child(request: dict[str, Any], fds: list[int], zygote: int) -> None:
    """Become the unit; never returns."""
    code = 1
    try:
        os.setsid()
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != zygote:
            os._exit(1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        if len(fds) > 2:
            os.dup2(fds[2], 3)
        keep = {0, 1, 2} | ({3} if len(fds) > 2 else set())
        os.closerange(max(keep) + 1, 65536)
        os.environ.clear()
        os.environ.update(request["env"])
        marker = request["env"].get(MARKER_NAME)
        if marker is not None:
            mark_environment_block(f"{MARKER_NAME}={marker}".encode())
        if len(fds) > 2 and "LISTEN_FDS" in os.environ:
            os.environ["LISTEN_PID"] = str(os.getpid())  # known only now, as with systemd
        os.chdir(request["cwd"])
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.argv = [request["module"], *request["args"]]
        sys.path[0] = request["cwd"]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _receive(conn: socket.socket, buffer: bytearray, fds: list[int]) -> bool:
    """Read what is there into buffer/fds; False at end-of-file."""
    space = socket.CMSG_SPACE(MAX_FDS * array("i").itemsize)
    data, ancillary, _, _ = conn.recvmsg(65536, space)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    buffer += data
    return bool(data)


def main() -> int:
    conn = socket.socket(fileno=int(sys.argv[1]))
    for module in sys.argv[2:]:
        importlib.import_module(module)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, int] = {}
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    buffer, fds = bytearray(), list[int]()
    me = os.getpid()
    conn.sendall(b'{"ready": true}\n')
    while True:
        for key, _ in selector.select():
            if key.fileobj is wake_r:
                os.read(wake_r, 4096)
                continue
            if not _receive(conn, buffer, fds):
                return 0  # the supervisor is gone; children die by their death signal
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                request = json.loads(line)
                count = request.get("fds", 2)
                mine, fds[:] = fds[:count], fds[count:]
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    conn.close()
                    _child(request, mine, me)
                for fd in mine:
                    os.close(fd)
                children[pid] = request["id"]
                conn.sendall(json.dumps({"id": request["id"], "pid": pid}).encode() + b"\n")
            if len(buffer) > MAX_MESSAGE:
                return 1
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            ident = children.pop(pid, None)
            if ident is not None:
                code = os.waitstatus_to_exitcode(status)
                conn.sendall(json.dumps({"id": ident, "exit": code}).encode() + b"\n")


if __name__ == "__main__":
    raise SystemExit(main())
