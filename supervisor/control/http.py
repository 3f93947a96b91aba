"""A small HTTP/1.1 server on h11 for the control socket and the health port.

One request per connection (`Connection: close`), bodies bounded, JSON in and out;
streaming answers (logs, events) are NDJSON sent with chunked encoding until the client
goes away. Errors are `{"error": {"code", "message"}}` with the matching status.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import h11
from anyio.streams.stapled import MultiListener

MAX_BODY = 1024 * 1024  # a control request is a few keys, never megabytes
MAX_HEAD = 16 * 1024  # request line and headers; a longer head is answered 431
REQUEST_TIMEOUT = 10.0  # default: a client that sends its request slower than this gets 408
SEND_TIMEOUT = 5.0  # an error answer to a client that does not read is given up on
LINGER_TIMEOUT = 1.0  # after an error answer, input still arriving is read this long
LINGER_BYTES = 4 * 1024 * 1024  # ... and at most this much
DEFAULT_CONNECTIONS = 128  # open at once per port; more are answered 503
READ_SIZE = 65536


class ApiError(Exception):
    """An error answer: HTTP status, a stable code, and a message naming the culprit."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    peer: Any = None  # whatever the listener says about the caller

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_request", f"body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise ApiError(400, "bad_request", "body is not JSON: nested too deeply") from exc
        if not isinstance(value, dict):
            raise ApiError(400, "bad_request", "body must be a JSON object")
        return value

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["0"])[-1] in ("1", "true", "yes")

    def number(self, name: str, default: float) -> float:
        raw = self.query.get(name, [None])[-1]
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"{name} must be a number, got {raw!r}") from exc
        if not math.isfinite(value) or value < 0:
            raise ApiError(400, "bad_request", f"{name} must be a finite number >= 0, got {raw!r}")
        return value


@dataclass
class Response:
    status: int = 200
    body: Any = None
    stream: AsyncIterator[dict[str, Any]] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Raw:
    """A body sent as it is, with its content type (the status page, /metrics)."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class Limits:
    """What one listening port allows (the stack's `max_connections`, `request_timeout`)."""

    connections: int = DEFAULT_CONNECTIONS
    request_timeout: float = REQUEST_TIMEOUT


async def serve_connection(
    stream: anyio.abc.ByteStream,
    handler: Handler,
    peer: Any,
    request_timeout: float = REQUEST_TIMEOUT,
) -> None:
    """Answer one request on `stream`; a malformed or too slow one gets an error answer
    (400, 408, 413, 431) with a JSON body, then the connection closes."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    async with stream:
        try:
            with anyio.fail_after(request_timeout):
                request = await _read_request(conn, stream, peer)
        except TimeoutError:
            error = ApiError(408, "timeout", f"request not received within {request_timeout:g} s")
            await _send_error(conn, stream, error)
            return
        except h11.RemoteProtocolError as exc:
            await _send_error(conn, stream, ApiError(exc.error_status_hint, "bad_http", str(exc)))
            return
        except ApiError as exc:
            await _send_error(conn, stream, exc)
            return
        except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            return
        if request is None:
            return
        try:
            response = await handler(request)
        except ApiError as exc:
            response = Response(exc.status, _error_body(exc))
        except Exception as exc:
            error = ApiError(500, "internal", f"internal error: {exc!r}")
            response = Response(500, _error_body(error))
        if response.stream is not None:
            await _send_stream(conn, stream, response)
            return
        # An answer once computed is delivered even if the supervisor stops meanwhile (a
        # `set` whose change the shutdown rolled back learns so), within a bound.
        with anyio.CancelScope(shield=True), anyio.move_on_after(SEND_TIMEOUT):
            if isinstance(response.body, Raw):
                await _send_raw(conn, stream, response, head_only=request.method == "HEAD")
            else:
                await _send_json(conn, stream, response.status, response.body, response.headers)


async def _send_raw(
    conn: h11.Connection, stream: anyio.abc.ByteStream, response: Response, *, head_only: bool
) -> None:
    body = response.body
    assert isinstance(body, Raw)
    head = [
        ("Content-Type", body.content_type),
        ("Content-Length", str(len(body.data))),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
        *response.headers,
    ]
    try:
        await stream.send(conn.send(h11.Response(status_code=response.status, headers=head)))
        if not head_only:
            await stream.send(conn.send(h11.Data(data=body.data)))
        await stream.send(conn.send(h11.EndOfMessage()))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
        return


async def _send_error(conn: h11.Connection, stream: anyio.abc.ByteStream, exc: ApiError) -> None:
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with anyio.move_on_after(SEND_TIMEOUT):
            await _send_json(conn, stream, exc.status, _error_body(exc))
    # Read what the client is still sending (bounded) before closing: closing with unread
    # input resets the connection, and the client would lose the answer.
    with anyio.move_on_after(LINGER_TIMEOUT):
        drained = 0
        while drained < LINGER_BYTES:
            try:
                drained += len(await stream.receive(READ_SIZE))
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                break


def _error_body(exc: ApiError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message}}


async def _read_request(
    conn: h11.Connection, stream: anyio.abc.ByteStream, peer: Any
) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            return None
    assert head is not None
    url = urlsplit(head.target.decode())
    return Request(head.method.decode(), url.path, parse_qs(url.query), bytes(body), peer)


async def _send_json(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    status: int,
    body: Any,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    payload = (json.dumps(body) + "\n").encode()
    head = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Connection", "close"),
        *(headers or []),
    ]
    try:
        await stream.send(conn.send(h11.Response(status_code=status, headers=head)))
        await stream.send(conn.send(h11.Data(data=payload)))
        await stream.send(conn.send(h11.EndOfMessage()))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
        return


async def _send_stream(
    conn: h11.Connection, stream: anyio.abc.ByteStream, response: Response
) -> None:
    assert response.stream is not None
    head = [
        ("Content-Type", "application/x-ndjson"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(_until_closed, stream, tg.cancel_scope)
        try:
            await stream.send(conn.send(h11.Response(status_code=response.status, headers=head)))
            async for item in response.stream:
                await stream.send(conn.send(h11.Data(data=(json.dumps(item) + "\n").encode())))
            await stream.send(conn.send(h11.EndOfMessage()))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
            pass
        tg.cancel_scope.cancel()


async def _until_closed(stream: anyio.abc.ByteStream, scope: anyio.CancelScope) -> None:
    """A stream's client sends nothing after its request: its end of the connection
    closing ends the stream, so a follower of a unit that prints nothing does not hold
    its connection (and a slot of `max_connections`) after the client has gone."""
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        scope.cancel()


# accept() errors that mean "out of a resource for now": wait and try again, never die.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_RETRY_INITIAL = 0.05  # first pause after accept() failed for want of descriptors
ACCEPT_RETRY_MAX = 1.0


async def serve(
    listener: anyio.abc.Listener[Any],
    handler: Handler,
    peer_of: Callable[[Any], Any],
    *,
    limits: Limits = Limits(),
    note: Callable[[str], None] = lambda _text: None,
) -> None:
    """Serve every connection of `listener` until cancelled: at most `limit` at once
    (more are answered 503 at once), and running out of file descriptors pauses
    accepting (said once) instead of ending the server."""
    listeners = listener.listeners if isinstance(listener, MultiListener) else [listener]
    active = 0

    async def one(stream: Any) -> None:
        nonlocal active
        try:
            try:
                peer = peer_of(stream)
            except OSError:
                peer = None
            await serve_connection(stream, handler, peer, limits.request_timeout)
        finally:
            active -= 1

    async def accept_loop(sub: Any) -> None:
        nonlocal active
        delay, warned = ACCEPT_RETRY_INITIAL, False
        while True:
            try:
                stream = await sub.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                cause = exc if isinstance(exc, OSError) else exc.__cause__  # anyio wraps it
                if not isinstance(cause, OSError) or cause.errno not in _EXHAUSTED:
                    raise
                if not warned:
                    note(f"cannot accept connections ({cause.strerror}); retrying, units run on")
                    warned = True
                await anyio.sleep(delay)
                delay = min(delay * 2, ACCEPT_RETRY_MAX)
                continue
            if warned:
                note("accepting connections again")
            delay, warned = ACCEPT_RETRY_INITIAL, False
            if active >= limits.connections:
                tg.start_soon(_refuse, stream, limits.connections)
                continue
            active += 1
            tg.start_soon(one, stream)

    async with anyio.create_task_group() as tg:
        for sub in listeners:
            tg.start_soon(accept_loop, sub)


async def _refuse(stream: anyio.abc.ByteStream, limit: int) -> None:
    """503 without reading the request: the slot is not there to read it in."""
    body = json.dumps(
        {"error": {"code": "busy", "message": f"{limit} connections are open; try again"}}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        with anyio.move_on_after(SEND_TIMEOUT):
            await stream.send(head + body)
    with contextlib.suppress(Exception):
        await stream.aclose()
