"""Readiness probes: tcp, http, exec, log, notify and mcp, each attempt bounded by
`timeout`, the whole wait by `within`. Readiness is an event the caller awaits, never a
sleep. Liveness attempts (`attempt_live`) reuse the same kinds after ready; `mcp` then
sends a `ping` instead of listing tools. The duration of every attempt that passed goes
to the unit's latency histogram."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import h11

from supervisor.config.spec import port_number
from supervisor.observe import Histogram, ToolList
from supervisor.osproc.listening import LOCAL_HOSTS, ListenWatch
from supervisor.osproc.spawn import Reaper, SpawnError, spawn
from supervisor.osproc.tree import kill_tree
from supervisor.plan import RenderedProbe
from supervisor.runtime import mcp

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
    histogram: Histogram | None = None  # durations of the attempts that passed
    # Told each failed attempt's error ("" when one passed), for `why`.
    on_error: Callable[[str], None] = field(default=lambda _error: None)
    tools: ToolList | None = None  # what the last passing mcp attempt listed
    listening: ListenWatch | None = None  # the shared reader of listening local ports


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
    if probe.kind == "tcp" and ctx.listening is not None:
        local = _local_port(probe.target[0])
        if local is not None:
            started = anyio.current_time()
            with anyio.move_on_after(probe.within):
                await ctx.listening.until_listening(local)
                if ctx.histogram is not None:
                    ctx.histogram.observe(anyio.current_time() - started)
                return
            raise ProbeTimeout(probe, f"nothing listens on port {local}")
    attempt = _ATTEMPTS[probe.kind]
    last_error = ""
    # Attempts start FIRST_RETRY apart and double up to `interval`: a fast server is seen
    # within milliseconds, a slow one is not polled harder than asked.
    pause = min(FIRST_RETRY, probe.interval)
    with anyio.move_on_after(probe.within):
        while True:
            started = anyio.current_time()
            try:
                with anyio.fail_after(probe.timeout):
                    await attempt(probe, ctx)
            except ATTEMPT_ERRORS as exc:
                last_error = _error_text(exc, probe)
                ctx.on_error(last_error)
            else:
                if ctx.histogram is not None:
                    ctx.histogram.observe(anyio.current_time() - started)
                ctx.on_error("")
                return
            await anyio.sleep(pause)
            pause = min(pause * 2, probe.interval)
    raise ProbeTimeout(probe, last_error)


def _local_port(target: str) -> int | None:
    """The port of a `tcp` target on this machine (None: another host, or malformed)."""
    host, sep, port = target.rpartition(":")
    if not sep:
        host, port = "", target
    if host.removeprefix("[").removesuffix("]") not in LOCAL_HOSTS:
        return None
    return port_number(port)


class ProbeFailed(Exception):
    """One attempt answered, but not with success."""


# What one failed attempt may raise: nothing else is a probe's failure (a bug is not).
ATTEMPT_ERRORS = (OSError, TimeoutError, ProbeFailed, mcp.McpError, h11.ProtocolError)


def _error_text(exc: BaseException, probe: RenderedProbe) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {probe.timeout:g} s"
    return str(exc) or type(exc).__name__


async def attempt_live(probe: RenderedProbe, ctx: ProbeContext) -> str:
    """One liveness attempt of a tcp, http, exec or mcp probe: "" when it passed, else
    why not."""
    started = anyio.current_time()
    try:
        with anyio.fail_after(probe.timeout):
            await _LIVE_ATTEMPTS[probe.kind](probe, ctx)
    except ATTEMPT_ERRORS as exc:
        if ctx.histogram is not None:
            ctx.histogram.failed()
        return _error_text(exc, probe)
    if ctx.histogram is not None:
        ctx.histogram.observe(anyio.current_time() - started)
    return ""


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
    try:  # as rendered: a `${...}` may have made it malformed
        url = urlsplit(probe.target[0])
        port = url.port or 80
    except ValueError as exc:
        raise ProbeFailed(f"{probe.target[0]!r} is not a valid URL: {exc}") from None
    if url.scheme != "http" or not url.hostname:
        raise ProbeFailed(f"only http:// URLs are probed, got {probe.target[0]!r}")
    status = await http_get_status(url.hostname, port, url.path or "/", url.query)
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
        # The probe's output is not shown: /dev/null takes it (`pg_isready`, `redis-cli
        # ping` print as they pass).
        child = spawn(probe.target, ctx.env, ctx.cwd, reaper=ctx.reaper, discard_output=True)
    except SpawnError as exc:
        raise ProbeFailed(str(exc)) from exc
    try:
        await child.exited.wait()
    finally:
        if child.returncode is None:
            with anyio.CancelScope(shield=True):
                await kill_tree(child.pid, b"\0", [], child.exited)
    if child.returncode != 0:
        raise ProbeFailed(f"exec probe exited {child.returncode}")


async def _mcp_tools(probe: RenderedProbe, ctx: ProbeContext) -> None:
    ctx.tools = await mcp.list_tools(probe.target[0])


async def _mcp_ping(probe: RenderedProbe, ctx: ProbeContext) -> None:
    await mcp.ping(probe.target[0])


Attempt = Callable[[RenderedProbe, ProbeContext], Awaitable[None]]
_ATTEMPTS: Mapping[str, Attempt] = {
    "tcp": _tcp,
    "http": _http,
    "exec": _exec,
    "mcp": _mcp_tools,
}
_LIVE_ATTEMPTS: Mapping[str, Attempt] = {**_ATTEMPTS, "mcp": _mcp_ping}
