"""Draining a unit's output pipe line by line: a pipe is never left unread, so a unit
never blocks on a full pipe, and no line grows memory without bound.

Two ways, one splitting rule: `drain` is a coroutine (a task per pipe); `read_lines`
reads from the event loop's own callbacks, with no task at all — a running unit's two
pipes then cost a registered callback each instead of two tasks (about 10 KiB a unit).

A line longer than `max_line` is delivered in pieces; with a `Masker`, secrets are
masked before the line is cut, so no cut splits a secret into two unmasked halves (the
unfinished rest keeps back as many bytes as the longest secret could still need).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Protocol

import anyio

MAX_LINE = 16 * 1024  # longer lines are split, so one unit cannot grow memory unbounded
READ_CHUNK = 64 * 1024


class Masker(Protocol):
    longest: int  # bytes in the longest secret

    def mask_bytes(self, data: bytes) -> bytes: ...


async def drain(
    fd: int,
    on_line: Callable[[str], None],
    *,
    max_line: int = MAX_LINE,
    masker: Masker | None = None,
) -> None:
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
        _split(buffer, on_line, max_line, masker)
    _split(buffer, on_line, max_line, masker, final=True)


def read_lines(
    fd: int,
    on_line: Callable[[str], None],
    done: anyio.Event,
    *,
    max_line: int = MAX_LINE,
    masker: Masker | None = None,
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
            _split(buffer, on_line, max_line, masker)
            return
        stop()
        try:
            _split(buffer, on_line, max_line, masker, final=True)
        finally:
            done.set()

    loop.add_reader(fd, readable)
    return stop


def _split(
    buffer: bytearray,
    on_line: Callable[[str], None],
    max_line: int,
    masker: Masker | None,
    *,
    final: bool = False,
) -> None:
    """Deliver the complete lines at the head of `buffer` (a line longer than
    `max_line` in pieces, and pieces of an unfinished line once it is that long),
    leaving only the unfinished rest in it; `final`: the rest too (end of file). The
    buffer is cut first, so a handler that raises never sees the same line twice."""
    pieces: list[bytes] = []
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
        pieces.extend(_pieces(_masked(bytes(buffer[start:end]), masker), max_line))
        start = end + 1
    del buffer[:start]
    if buffer and (final or len(buffer) >= max_line):
        rest = _masked(bytes(buffer), masker)
        # What could be the start of a secret still arriving waits for the next read.
        keep = 0 if final or masker is None else min(max(masker.longest - 1, 0), len(rest))
        head, tail = rest[: len(rest) - keep], rest[len(rest) - keep :]
        cut = _pieces(head, max_line)
        # A last piece shorter than a whole one goes on growing.
        left = cut.pop() if not final and len(cut[-1]) < max_line - 3 else b""
        pieces.extend(cut)
        buffer[:] = left + tail
    for piece in pieces:
        on_line(_text(piece))


def _masked(data: bytes, masker: Masker | None) -> bytes:
    return masker.mask_bytes(data) if masker is not None else data


def _pieces(line: bytes, max_line: int) -> list[bytes]:
    """`line` in pieces of at most `max_line` bytes, cut between UTF-8 characters."""
    pieces, start = [], 0
    while len(line) - start > max_line:
        end = start + max_line
        back = end
        while back > end - 3 and line[back] & 0xC0 == 0x80:  # a continuation byte
            back -= 1
        if line[back] & 0xC0 == 0x80:  # not UTF-8 there: cut where the bound is
            back = end
        pieces.append(line[start:back])
        start = back
    pieces.append(line[start:])
    return pieces


def _text(raw: bytes | bytearray) -> str:
    return bytes(raw).rstrip(b"\r").decode(errors="replace")
