"""The read-only HTTP port's transport: the JSON answers of `control.http`, plus answers
that are not JSON — the status page (HTML) and `/metrics` (Prometheus text) — given as a
`Raw` body. Requests are read exactly as `control.http` reads them (same limits, same
timeout); one request per connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import h11

from supervisor.control.http import (
    REQUEST_TIMEOUT,
    ApiError,
    Request,
    Response,
    _error_body,
    _read_request,
    _send_json,
    _send_stream,
)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Raw:
    """A body sent as it is, with its content type."""

    data: bytes
    content_type: str


async def serve_port(listener: anyio.abc.Listener[Any], handler: Handler) -> None:
    """Serve every connection of `listener` until cancelled."""

    async def one(stream: anyio.abc.ByteStream) -> None:
        await serve_connection(stream, handler)

    await listener.serve(one)


async def serve_connection(stream: anyio.abc.ByteStream, handler: Handler) -> None:
    """Answer one request on `stream`."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            with anyio.fail_after(REQUEST_TIMEOUT):
                request = await _read_request(conn, stream, None)
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
        if isinstance(response.body, Raw):
            await _send_raw(conn, stream, response, head_only=request.method == "HEAD")
        elif response.stream is None:
            await _send_json(conn, stream, response.status, response.body, response.headers)
        else:
            await _send_stream(conn, stream, response)


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
