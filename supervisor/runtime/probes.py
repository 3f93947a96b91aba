"""Readiness probes: tcp, http, exec, log and notify, each attempt bounded by `timeout`,
the whole wait by `within`. Readiness is an event the caller awaits, never a sleep."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import h11

from supervisor.config.model import port_number
from supervisor.osproc.spawn import Reaper, SpawnError, spawn
from supervisor.osproc.tree import kill_tree
from supervisor.plan import RenderedProbe

FIRST_RETRY = 0.01  # the first pause between readiness attempts


class ProbeTimeout(Exception):
    """A unit did not become ready within its probe's `within`."""

    def __init__(self, probe: RenderedProbe, last_error: str) -> None:
        self.probe, self.last_error = probe, last_error
        detail = f": {last_error}" if last_error else ""
        super().__init__(f"not ready within {probe.within:g} s ({probe.kind} probe{detail})")


@dataclass
class ProbeContext:
    """What probes read besides the network: events set by the output drain (log) and
    the notify socket, and what an exec probe needs to spawn."""

    reaper: Reaper
    env: Mapping[str, str]
    cwd: str
    log_matched: anyio.Event
    notified: anyio.Event


async def wait_ready(probe: RenderedProbe, ctx: ProbeContext) -> None:
    """Return once the probe passes.

    Raises:
        ProbeTimeout: it did not pass within `probe.within`.
    """
    if probe.kind in ("log", "notify"):
        event = ctx.log_matched if probe.kind == "log" else ctx.notified
        with anyio.move_on_after(probe.within):
            await event.wait()
            return
        raise ProbeTimeout(probe, "")
    attempt = _ATTEMPTS[probe.kind]
    last_error = ""
    # Attempts start FIRST_RETRY apart and double up to `interval`: a fast server is seen
    # within milliseconds, a slow one is not polled harder than asked.
    pause = min(FIRST_RETRY, probe.interval)
    with anyio.move_on_after(probe.within):
        while True:
            try:
                with anyio.fail_after(probe.timeout):
                    await attempt(probe, ctx)
                return
            except (OSError, TimeoutError, ProbeFailed, h11.ProtocolError) as exc:
                last_error = str(exc) or type(exc).__name__
            await anyio.sleep(pause)
            pause = min(pause * 2, probe.interval)
    raise ProbeTimeout(probe, last_error)


class ProbeFailed(Exception):
    """One attempt answered, but not with success."""


def _host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", target
    number = port_number(port)
    if number is None:
        raise ProbeFailed(f"bad tcp target {target!r}")
    return host or "127.0.0.1", number


async def _tcp(probe: RenderedProbe, ctx: ProbeContext) -> None:
    host, port = _host_port(probe.target[0])
    stream = await anyio.connect_tcp(host, port)
    await stream.aclose()


async def _http(probe: RenderedProbe, ctx: ProbeContext) -> None:
    url = urlsplit(probe.target[0])
    if url.scheme != "http" or not url.hostname:
        raise ProbeFailed(f"only http:// URLs are probed, got {probe.target[0]!r}")
    status = await http_get_status(url.hostname, url.port or 80, url.path or "/", url.query)
    if not 200 <= status < 400:
        raise ProbeFailed(f"HTTP {status}")


async def http_get_status(host: str, port: int, path: str, query: str = "") -> int:
    """Status code of a plain GET (the body is not read)."""
    target = path + (f"?{query}" if query else "")
    conn = h11.Connection(h11.CLIENT)
    async with await anyio.connect_tcp(host, port) as stream:
        request = h11.Request(
            method="GET", target=target, headers=[("Host", host), ("Connection", "close")]
        )
        await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive())
                except anyio.EndOfStream:
                    conn.receive_data(b"")
                continue
            if isinstance(event, h11.Response):
                return event.status_code
            if isinstance(event, h11.ConnectionClosed):
                raise ProbeFailed("connection closed before a response")


async def _exec(probe: RenderedProbe, ctx: ProbeContext) -> None:
    try:
        child = spawn(probe.target, ctx.env, ctx.cwd, reaper=ctx.reaper)
    except SpawnError as exc:
        raise ProbeFailed(str(exc)) from exc
    for fd in (child.stdout, child.stderr):
        os.close(fd)  # the probe's output is not shown; a write gets EPIPE, not a hang
    try:
        await child.exited.wait()
    finally:
        if child.returncode is None:
            with anyio.CancelScope(shield=True):
                await kill_tree(child.pid, b"\0", [], child.exited)
    if child.returncode != 0:
        raise ProbeFailed(f"exec probe exited {child.returncode}")


_ATTEMPTS: Mapping[str, Callable[[RenderedProbe, ProbeContext], Awaitable[None]]] = {
    "tcp": _tcp,
    "http": _http,
    "exec": _exec,
}
