"""Which local TCP ports are listening: one look every LISTEN_POLL serves every unit
waiting on a `tcp` probe, however many there are, instead of each of them connecting in
a loop (and competing with the servers for the CPU while a whole stack starts).

The look asks the kernel for its listening sockets only (netlink sock_diag, what `ss
-lnt` uses): microseconds, however many connections the machine has. Reading
/proc/net/tcp instead costs a line per socket in any state — 12 ms a read here with
5,600 sockets in TIME_WAIT — and is the fallback where netlink is not allowed.

Invariant: a port counts as listening for 127.0.0.1 when a socket in LISTEN state is
bound to it on a loopback or wildcard address, in this network namespace — exactly
when a connection to 127.0.0.1:PORT would be accepted into a backlog.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterable

import anyio

LISTEN_POLL = 0.01  # between looks while anybody waits
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::", ""})

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
_NETLINK_INET_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2 (the socket id left zero)
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: len, type
_REQ_BYTECODE = 1  # INET_DIAG_REQ_BYTECODE: a filter the kernel runs on each socket
_OP = struct.Struct("=BBH")  # inet_diag_bc_op: code, yes, no (jumps in bytes)
_BC_JMP, _BC_S_GE, _BC_S_LE = 1, 2, 3
FILTER_MAX = 16  # ports asked for by name; more waiters get the whole list
# Loopback and wildcard addresses, as the kernel stores them (network byte order).
_LOCAL_RAW = frozenset(
    {
        bytes(4),  # 0.0.0.0
        bytes([127, 0, 0, 1]),
        bytes(16),  # ::
        bytes(15) + b"\x01",  # ::1
        bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]),  # ::ffff:127.0.0.1
    }
)
# The same as /proc/net/tcp writes them: each 32-bit word as a host-order hex number.
_LOCAL = frozenset(
    "".join(f"{word:08X}" for (word,) in struct.iter_unpack("=I", raw)) for raw in _LOCAL_RAW
)
_LISTEN = f"{_TCP_LISTEN:02X}"  # the LISTEN state as /proc/net/tcp writes it ("0A")
_netlink_works = True  # until the kernel or a sandbox says otherwise


_filter_works = True  # a kernel that refuses the filter is asked for the whole list


def listening_ports(among: Collection[int] = ()) -> set[int]:
    """Ports with a socket listening on a loopback or wildcard address (of `among`, when
    given: the kernel then reports just those, whatever else listens)."""
    wanted = set(among)
    found = _listening(wanted)
    return found & wanted if wanted else found


def _listening(wanted: set[int]) -> set[int]:
    """The filtered look, else the kernel's whole list, else /proc/net/tcp."""
    global _netlink_works, _filter_works
    if _netlink_works:
        try:
            if wanted and len(wanted) <= FILTER_MAX and _filter_works:
                try:
                    return _from_netlink(wanted)
                except OSError:
                    _filter_works = False
            return _from_netlink()
        except OSError:
            _netlink_works = False
    return _from_proc()


def port_filter(ports: Iterable[int]) -> bytes:
    """sock_diag bytecode that passes a socket whose local port is one of `ports`.

    Each port is a block `port >= P and port <= P` (two 8-byte conditions); a block that
    fails jumps past the JMP that follows it, to the next block (past the end, for the
    last: rejected), and one that passes reaches that JMP, which jumps to the end
    (accepted) — the form `ss` compiles `sport = :A or sport = :B` to."""
    code = b""
    for port in sorted(set(ports), reverse=True):  # built from the end: jumps are forward
        block = _OP.pack(_BC_S_GE, 8, 20) + _OP.pack(0, 0, port)
        block += _OP.pack(_BC_S_LE, 8, 12) + _OP.pack(0, 0, port)
        code = block + (_OP.pack(_BC_JMP, _OP.size, len(code) + _OP.size) + code if code else b"")
    return code


def _from_netlink(among: Collection[int] = ()) -> set[int]:
    ports: set[int] = set()
    bytecode = port_filter(among) if among else b""
    attribute = _ATTRIBUTE.pack(_ATTRIBUTE.size + len(bytecode), _REQ_BYTECODE) + bytecode
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_INET_DIAG) as sock:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN)
            body += attribute if bytecode else b""
            flags = _NLM_F_REQUEST | _NLM_F_DUMP
            sock.send(
                _HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body
            )
            while _read_dump(sock.recv(65536), family, ports):
                pass
    return ports


def _read_dump(data: bytes, family: int, ports: set[int]) -> bool:
    """Add the listening ports of one datagram of the dump; False once it is complete."""
    width = 4 if family == socket.AF_INET else 16
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            raise OSError("malformed netlink message")
        if kind == _NLMSG_DONE:
            return False
        if kind == _NLMSG_ERROR:
            (errno,) = struct.unpack_from("=i", data, offset + _HEADER.size)
            raise OSError(-errno, "sock_diag refused the dump")
        message = offset + _HEADER.size  # inet_diag_msg: family, state, timer, retrans, id
        if kind == _SOCK_DIAG_BY_FAMILY and data[message + 1] == _TCP_LISTEN:
            (port,) = struct.unpack_from("!H", data, message + 4)
            if data[message + 8 : message + 8 + width] in _LOCAL_RAW:
                ports.add(port)
        offset += (length + 3) & ~3
    return True


def _from_proc() -> set[int]:
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
            for port in listening_ports(self._waiting):
                for event in self._waiting.pop(port):
                    event.set()
            await anyio.sleep(LISTEN_POLL)
