"""The guard program: a tiny process that outlives a killed supervisor and ends its units.

Run as: python -S -I guard_main.py RUNTIME_DIR [LINK SOCKET]
(standard library only, no site-packages: it must start fast and small).

The supervisor starts it before any unit and keeps the write end of its stdin; lines
`+SID` / `-SID` register and forget unit sessions. When the pipe reaches end-of-file —
the supervisor exited, however it exited — the guard SIGKILLs every process of a
registered session and every process whose environment carries a marker under
RUNTIME_DIR (`SUPERVISE_ENV=RUNTIME_DIR/...`), until none is left; then it removes
RUNTIME_DIR (published keys, signatures among them, must not outlive the stack), and
LINK (the supervisor's entry in the per-user registry of running stacks) if it still
points at SOCKET, and SOCKET itself if it is a socket.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import sys
import time
from types import ModuleType

PATIENCE = 3.0  # seconds of sweeping before giving up on unkillable processes
SWEEP_INTERVAL = 0.01


def _procfs() -> ModuleType:
    """The package's /proc reader, loaded by path (isolated mode cannot import it)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "procfs.py")
    spec = importlib.util.spec_from_file_location("supervise_procfs", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


procfs = _procfs()


def members(sessions: set[int], marker: bytes) -> list[int]:
    found = []
    me = os.getpid()
    for pid in procfs.pids():
        if pid == me:
            continue
        proc = procfs.read_stat(pid)
        if proc is None:
            continue
        if proc.sid in sessions:
            found.append(pid)
            continue
        entry = procfs.environ_entry(pid, b"SUPERVISE_ENV")
        if entry is not None and entry.startswith(marker):
            found.append(pid)
    return found


def sweep(sessions: set[int], marker: bytes) -> int:
    """SIGKILL everything that belongs to the stack until nothing does; returns how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        pids = members(sessions, marker)
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


def clean_up(runtime_dir: str, link: str | None, socket_path: str | None) -> None:
    shutil.rmtree(runtime_dir, ignore_errors=True)
    if link is None or socket_path is None:
        return
    try:
        if os.readlink(link) == socket_path:
            os.unlink(link)
    except OSError:
        pass
    try:
        if stat.S_ISSOCK(os.lstat(socket_path).st_mode):
            os.unlink(socket_path)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    runtime_dir = argv[1]
    link, socket_path = (argv[2], argv[3]) if len(argv) > 3 else (None, None)
    marker = f"SUPERVISE_ENV={runtime_dir.rstrip('/')}/".encode()
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
    clean_up(runtime_dir, link, socket_path)
    if killed:
        print(
            f"supervise guard: killed {killed} process(es) left by the supervisor", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
