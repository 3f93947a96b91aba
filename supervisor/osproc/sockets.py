"""Sockets the supervisor holds or hands down: listening sockets kept across a unit's
restarts (`socket = true`, systemd's LISTEN_FDS protocol), free loopback ports, and the
sd_notify datagram socket.

Invariant: a held socket is bound once and passed to every instance as fd 3 with
LISTEN_FDS=1 and LISTEN_PID = that instance's own pid (known only after the fork, so a
cold start execs through a tiny launcher that keeps the pid).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import anyio
import anyio.abc

from supervisor.errors import ConfigError, Problem

SOCKET_BACKLOG = 1024  # connections that queue on a held socket while its unit restarts
LOOPBACK = "127.0.0.1"


def listening_socket(port: int) -> socket.socket:
    """A loopback listening socket the supervisor holds for a unit (`socket = true`).

    Raises:
        OSError: the port cannot be bound (nothing is left open then).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(SOCKET_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
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


# A unit's port in a plan: a number, "auto" or none, and whether the supervisor holds it.
Planned = tuple[int | str | None, bool]


class PortBook:
    """Every unit's port, and the sockets held for `socket = true` units; a port is kept
    across restarts and released when the unit leaves the stack.

    A port that cannot be bound is a ConfigError naming the unit, its `port` key and the
    port (never an OSError: `run` and `reload` answer it as an invalid stack). `file` is
    the stack file those problems name, where the book's owner knows it."""

    def __init__(self, file: str = "") -> None:
        self.file = file
        self.ports: dict[str, int] = {}
        self._held: dict[str, socket.socket] = {}
        self._reserved: dict[str, socket.socket] = {}  # bound by `reserve`, for `assign`
        self._unbound: dict[str, int] = {}  # held ports `lenient` let go unbound
        self._lenient: list[Problem] | None = None

    @contextlib.contextmanager
    def lenient(self) -> Iterator[list[Problem]]:
        """While inside, a held port that cannot be bound is not an error: the unit keeps
        its port number, the problem is collected, and the unit's next start binds the
        port again (`held`). A rollback goes through whatever another program took in
        the meantime, and says so."""
        problems: list[Problem] = []
        self._lenient = problems
        try:
            yield problems
        finally:
            self._lenient = None

    def assign(self, name: str, port: int | str | None, hold: bool) -> None:
        """(Re)assign `name`'s port: a number, "auto" (a free one), or none. A held
        socket `reserve` bound for `name` on that port is taken instead of binding.

        Raises:
            ConfigError: a held socket cannot be bound (another program has the port).
        """
        self.release(name)
        if hold:
            sock = self._reserved.pop(name, None)
            if sock is not None and (not isinstance(port, int) or _port_of(sock) != port):
                sock.close()
                sock = None
            if sock is None:
                number = port if isinstance(port, int) else 0
                try:
                    sock = listening_socket(number)
                except OSError as exc:
                    problem = self._problem(name, number, exc, self.file)
                    if self._lenient is None or not number:
                        raise ConfigError([problem]) from None
                    self._lenient.append(problem)
                    self._unbound[name] = self.ports[name] = number
                    return
            self._held[name] = sock
            self.ports[name] = _port_of(sock)
        elif port == "auto":
            self.ports[name] = free_port()
        elif isinstance(port, int):
            self.ports[name] = port

    def reserve(self, plan: Mapping[str, Planned], file: str = "") -> None:
        """Bind now, before a change touches anything, every fixed held port of `plan`
        (the new plan: every unit's port and whether it is held), so that the change
        cannot fail halfway on a taken port; `assign` takes them, `unreserve` closes
        what it did not take. A port this book holds already is shared with its next
        owner (the same socket: it never stops listening); one held by a unit that the
        change stops for good is bound once that unit is gone, as before.

        Raises:
            ConfigError: every port that cannot be bound, each naming its unit; nothing
                stays reserved then.
        """
        owners = {_port_of(sock): name for name, sock in self._held.items()}
        problems = []
        for name, (port, hold) in plan.items():
            if not hold or not isinstance(port, int):
                continue
            owner = owners.get(port)
            if owner is not None:
                if owner == name or plan.get(owner) != (port, True):  # it leaves the port
                    self._reserved[name] = self._held[owner].dup()
                    continue
                problems.append(self._problem(name, port, _in_use(), file, owner))
                continue
            try:
                self._reserved[name] = listening_socket(port)
            except OSError as exc:
                user = self._user(port, name)
                if user is not None and user not in plan:
                    continue  # stopped for good before `assign` binds it
                problems.append(self._problem(name, port, exc, file))
        if problems:
            self.unreserve()
            raise ConfigError(problems)

    def unreserve(self) -> None:
        for sock in self._reserved.values():
            sock.close()
        self._reserved.clear()

    def held(self, name: str) -> socket.socket | None:
        """The socket held for `name`, bound now if `lenient` let it go unbound.

        Raises:
            ConfigError: that port still cannot be bound.
        """
        port = self._unbound.get(name)
        if port is not None:
            try:
                self._held[name] = listening_socket(port)
            except OSError as exc:  # not its own instance's: it has none now
                raise ConfigError([self._problem(name, port, exc, "", itself=False)]) from None
            del self._unbound[name]
        return self._held.get(name)

    def release(self, name: str) -> None:
        self.ports.pop(name, None)
        self._unbound.pop(name, None)
        sock = self._held.pop(name, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.unreserve()
        for name in list(self._held):
            self.release(name)

    def _user(self, port: int, name: str, itself: bool = True) -> str | None:
        """The unit of this book that has `port` (`name` itself last, if `itself`: it may
        listen on the port with its own socket, before a change gives it `socket = true`)."""
        users = [n for n, p in self.ports.items() if p == port]
        mine = name if itself and name in users else None
        return next((n for n in users if n != name), mine)

    def _problem(
        self,
        name: str,
        port: int,
        exc: OSError,
        file: str,
        user: str | None = None,
        itself: bool = True,
    ) -> Problem:
        process = name.rpartition("/")[2]
        if exc.errno == errno.EADDRINUSE:
            user = user or self._user(port, name, itself)
            if user == name:
                who = f"{name}'s running instance listens on it: stop {name} first"
            elif user is not None:
                who = f"unit {user} of this stack has it"
            else:
                who = "another program holds it"
            why = f"address already in use ({who})"
        elif exc.errno == errno.EACCES and 0 < port < 1024:
            why = "permission denied (a port below 1024 needs privileges)"
        else:
            why = (exc.strerror or str(exc)).lower()
        return Problem(
            file or self.file,
            f"processes.{process}.port",
            f"cannot listen on {LOOPBACK}:{port} for unit {name}: {why}",
        )


def _port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def _in_use() -> OSError:
    return OSError(errno.EADDRINUSE, "address already in use")
