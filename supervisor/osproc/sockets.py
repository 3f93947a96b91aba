"""Sockets the supervisor holds or hands down: listening sockets kept across a unit's
restarts (`socket = true`, systemd's LISTEN_FDS protocol), free loopback ports, and the
sd_notify datagram socket.

Invariant: a held socket is bound once and passed to every instance as fd 3 with
LISTEN_FDS=1 and LISTEN_PID = that instance's own pid (known only after the fork, so a
cold start execs through a tiny launcher that keeps the pid).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import anyio
import anyio.abc

SOCKET_BACKLOG = 1024  # connections that queue on a held socket while its unit restarts


def listening_socket(port: int) -> socket.socket:
    """A loopback listening socket the supervisor holds for a unit (`socket = true`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(SOCKET_BACKLOG)
    return sock


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_LISTEN_LAUNCHER = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def with_listen_fds(argv: tuple[str, ...], fd: int) -> tuple[str, ...]:
    """Wrap argv so the child gets `fd` as fd 3 with LISTEN_FDS=1 and LISTEN_PID = its own
    pid. POSIX sh (dash) redirects only single-digit descriptors; a higher one goes
    through a short Python launcher instead."""
    if fd <= 9:
        moves = "" if fd == 3 else f" 3<&{fd} {fd}<&-"
        script = f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"{moves}'
        return ("/bin/sh", "-c", script, "sh", *argv)
    return (sys.executable, "-S", "-E", "-c", _LISTEN_LAUNCHER, str(fd), *argv)


async def notify_socket(path: Path) -> anyio.abc.UNIXDatagramSocket:
    """A fresh sd_notify socket at `path` (0600), replacing whatever was there."""
    path.unlink(missing_ok=True)
    return await anyio.create_unix_datagram_socket(local_path=path, local_mode=0o600)


class PortBook:
    """Every unit's port, and the sockets held for `socket = true` units; a port is kept
    across restarts and released when the unit leaves the stack."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self._held: dict[str, socket.socket] = {}

    def assign(self, name: str, port: int | str | None, hold: bool) -> None:
        """(Re)assign `name`'s port: a number, "auto" (a free one), or none.

        Raises:
            OSError: a held socket cannot be bound.
        """
        self.release(name)
        if hold:
            sock = listening_socket(port if isinstance(port, int) else 0)
            self._held[name] = sock
            self.ports[name] = sock.getsockname()[1]
        elif port == "auto":
            self.ports[name] = free_port()
        elif isinstance(port, int):
            self.ports[name] = port

    def held(self, name: str) -> socket.socket | None:
        return self._held.get(name)

    def release(self, name: str) -> None:
        self.ports.pop(name, None)
        sock = self._held.pop(name, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for name in list(self._held):
            self.release(name)
