"""A small HTTP/1.1 server on h11 for the control socket and the health port.

One request per connection (`Connection: close`), bodies bounded, JSON in and out;
streaming answers (logs, events) are NDJSON sent with chunked encoding until the client
goes away. Errors are `{"error": {"code", "message"}}` with the matching status.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import h11

MAX_BODY = 1024 * 1024  # a control request is a few keys, never megabytes
REQUEST_TIMEOUT = 10.0  # a client that sends its request slower than this is dropped
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


async def serve_connection(stream: anyio.abc.ByteStream, handler: Handler, peer: Any) -> None:
    """Answer one request on `stream`."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            with anyio.fail_after(REQUEST_TIMEOUT):
                request = await _read_request(conn, stream, peer)
        except (
            TimeoutError,
            h11.RemoteProtocolError,
            anyio.BrokenResourceError,
            anyio.EndOfStream,
            ApiError,
        ) as exc:
            if isinstance(exc, ApiError) and conn.our_state is h11.SEND_RESPONSE:
                await _send_json(conn, stream, exc.status, _error_body(exc))
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
        if response.stream is None:
            await _send_json(conn, stream, response.status, response.body, response.headers)
        else:
            await _send_stream(conn, stream, response)


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
    try:
        await stream.send(conn.send(h11.Response(status_code=response.status, headers=head)))
        async for item in response.stream:
            await stream.send(conn.send(h11.Data(data=(json.dumps(item) + "\n").encode())))
        await stream.send(conn.send(h11.EndOfMessage()))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
        return


async def serve(
    listener: anyio.abc.Listener[Any], handler: Handler, peer_of: Callable[[Any], Any]
) -> None:
    """Serve every connection of `listener` until cancelled."""

    async def one(stream: Any) -> None:
        try:
            peer = peer_of(stream)
        except OSError:
            peer = None
        await serve_connection(stream, handler, peer)

    await listener.serve(one)
