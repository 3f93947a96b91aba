"""Draining a unit's output pipe line by line: a pipe is never left unread, so a unit
never blocks on a full pipe, and no line grows memory without bound.

Two ways, one splitting rule: `drain` is a coroutine (a task per pipe); `read_lines`
reads from the event loop's own callbacks, with no task at all — a running unit's two
pipes then cost a registered callback each instead of two tasks (about 10 KiB a unit).
"""

from __future__ import annotations

import asyncio
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
        _split(buffer, on_line, max_line)
    if buffer:
        on_line(_text(buffer))


def read_lines(
    fd: int, on_line: Callable[[str], None], done: anyio.Event, *, max_line: int = MAX_LINE
) -> Callable[[], None]:
    """Read `fd` whenever the running (asyncio) event loop finds it readable, calling
    `on_line` per line as `drain` does; `done` is set at end-of-file.

    Returns the function that stops reading, to be called (once or more) before `fd` is
    closed. A handler that raises is reported by the event loop; reading goes on.
    """
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    reading = True

    def stop() -> None:
        nonlocal reading
        if reading:
            reading = False
            loop.remove_reader(fd)

    def readable() -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            buffer.extend(data)
            _split(buffer, on_line, max_line)
            return
        stop()
        try:
            if buffer:
                on_line(_text(buffer))
        finally:
            done.set()

    loop.add_reader(fd, readable)
    return stop


def _split(buffer: bytearray, on_line: Callable[[str], None], max_line: int) -> None:
    """Deliver the complete lines at the head of `buffer` (and pieces of any line as long
    as `max_line`), leaving only the unfinished rest in it. The buffer is cut first, so a
    handler that raises never sees the same line twice."""
    lines, start = [], 0
    while (end := buffer.find(b"\n", start)) >= 0:
        lines.append(_text(buffer[start:end]))
        start = end + 1
    del buffer[:start]
    while len(buffer) >= max_line:
        lines.append(_text(buffer[:max_line]))
        del buffer[:max_line]
    for line in lines:
        on_line(line)


def _text(raw: bytes | bytearray) -> str:
    return bytes(raw).rstrip(b"\r").decode(errors="replace")
