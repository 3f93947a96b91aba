"""Draining a unit's output pipe line by line: a pipe is never left unread, so a unit
never blocks on a full pipe, and no line grows memory without bound."""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio

MAX_LINE = 16 * 1024  # longer lines are split, so one unit cannot grow memory unbounded
READ_CHUNK = 64 * 1024


async def drain(fd: int, on_line: Callable[[str], None], *, max_line: int = MAX_LINE) -> None:
    """Read `fd` to end-of-file, calling `on_line` per line.

    A final line without a newline is delivered at end-of-file; a line longer than
    `max_line` is delivered in pieces.
    """
    buffer = bytearray()
    while True:
        try:
            await anyio.wait_readable(fd)
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not data:
            break
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            on_line(_text(buffer[start:end]))
            start = end + 1
        del buffer[:start]
        while len(buffer) >= max_line:
            on_line(_text(buffer[:max_line]))
            del buffer[:max_line]
    if buffer:
        on_line(_text(buffer))


def _text(raw: bytes | bytearray) -> str:
    return bytes(raw).rstrip(b"\r").decode(errors="replace")
