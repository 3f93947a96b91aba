"""Which local TCP ports are listening, read from /proc/net/tcp and tcp6: one read every
LISTEN_POLL serves every unit waiting on a `tcp` probe, however many there are, instead
of each of them connecting in a loop (and competing with the servers for the CPU while
a whole stack starts).

Invariant: a port counts as listening for 127.0.0.1 when a socket in LISTEN state is
bound to it on a loopback or wildcard address, in this network namespace — exactly
when a connection to 127.0.0.1:PORT would be accepted into a backlog.
"""

from __future__ import annotations

import anyio

LISTEN_POLL = 0.01  # between reads of /proc/net/tcp while anybody waits
_LISTEN = "0A"  # the kernel's TCP_LISTEN state, as /proc/net/tcp writes it
_LOCAL = frozenset(
    {
        "00000000",  # 0.0.0.0
        "0100007F",  # 127.0.0.1
        "00000000000000000000000000000000",  # ::
        "00000000000000000000000001000000",  # ::1
        "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
    }
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::", ""})


def listening_ports() -> set[int]:
    """Ports with a socket listening on a loopback or wildcard address."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)  # the header
                for line in handle:
                    fields = line.split(None, 4)
                    if len(fields) > 3 and fields[3] == _LISTEN:
                        address, _, port = fields[1].partition(":")
                        if address in _LOCAL:
                            ports.add(int(port, 16))
        except OSError:
            continue
    return ports


class ListenWatch:
    """Waits for local ports to listen, with one reader for all waiters."""

    def __init__(self) -> None:
        self._waiting: dict[int, list[anyio.Event]] = {}
        self._wake = anyio.Event()

    async def until_listening(self, port: int) -> None:
        """Return once `port` listens (the caller bounds the wait)."""
        event = anyio.Event()
        self._waiting.setdefault(port, []).append(event)
        self._wake.set()
        try:
            await event.wait()
        finally:
            waiters = self._waiting.get(port, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._waiting.pop(port, None)

    async def run(self) -> None:
        """The reader; idle (no wake-ups at all) while nobody waits."""
        while True:
            if not self._waiting:
                self._wake = anyio.Event()
                await self._wake.wait()
            for port in listening_ports() & set(self._waiting):
                for event in self._waiting.pop(port):
                    event.set()
            await anyio.sleep(LISTEN_POLL)
