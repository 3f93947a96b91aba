"""A small MCP client over streamable HTTP, for probes: `initialize`, then `tools/list`
(readiness); a `ping` (liveness; preceded by `initialize` only when the server wants a
session for it). Plain JSON-RPC over h11 — not the MCP SDK, which must stay off the
supervisor's import path.

Invariants:
- Every exchange is one HTTP/1.1 request on its own connection; a response is read only
  up to `MAX_RESPONSE` bytes, and a `text/event-stream` answer only until the message
  that answers our request (the caller bounds the time).
- A server that names a session (`Mcp-Session-Id`) gets it back on every later request
  and a `DELETE` at the end, so probing never leaves sessions behind.
- Anything but a JSON-RPC result for our request id — an HTTP error, garbage, a
  JSON-RPC error, another id — is an `McpError` naming the step and what came back.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11

from supervisor.observe import ToolList, tool_list

PROTOCOL_VERSION = "2025-06-18"  # asked for in `initialize`; the server answers with its own
CLIENT_INFO = {"name": "supervise-probe", "version": "1"}
MAX_RESPONSE = 4 * 1024 * 1024  # a tool list bigger than this is not a healthy answer
MAX_PAGES = 32  # `tools/list` pages followed before giving up on a cursor loop
READ_SIZE = 65536
SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
SESSION_END_TIMEOUT = 1.0  # the closing DELETE of a stateful server's session, at most


class McpError(Exception):
    """One step of the exchange did not answer as MCP says it must."""

    def __init__(self, step: str, detail: str) -> None:
        self.step, self.detail = step, detail
        super().__init__(f"{step}: {detail}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    target: str  # path and query

    @classmethod
    def of(cls, url: str) -> Endpoint:
        """Raises McpError for anything but an http:// URL with a host."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise McpError("url", f"only http:// URLs are probed, got {url!r}")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise McpError("url", f"bad port in {url!r}") from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, target)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def list_tools(url: str) -> ToolList:
    """`initialize` then `tools/list` (every page): the server's tools.

    Raises:
        McpError: a step did not answer with a JSON-RPC result.
        OSError: the server cannot be reached.
    """
    async with _Session(Endpoint.of(url)) as session:
        capabilities = (await session.initialize()).get("capabilities")
        if isinstance(capabilities, dict) and "tools" not in capabilities:
            return tool_list([])  # a server without tools: nothing to list
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = {"cursor": cursor} if cursor else {}
            result = await session.call("tools/list", params)
            page = result.get("tools")
            if not isinstance(page, list) or not all(isinstance(t, dict) for t in page):
                raise McpError("tools/list", f"result has no list of tools: {_short(result)}")
            tools.extend(page)
            cursor = result.get("nextCursor") or None
            if not isinstance(cursor, str | None):
                raise McpError("tools/list", f"bad nextCursor {cursor!r}")
            if cursor is None:
                return tool_list(tools)
        raise McpError("tools/list", f"more than {MAX_PAGES} pages")


async def ping(url: str) -> None:
    """A `ping`: on its own first (a stateless server answers it in one request), and
    after an `initialize` if the server wants a session for it (HTTP 400 or 404).

    Raises:
        McpError: a step did not answer with a JSON-RPC result.
        OSError: the server cannot be reached.
    """
    endpoint = Endpoint.of(url)
    try:
        async with _Session(endpoint) as session:
            await session.call("ping", None)
            return
    except McpError as exc:
        if not exc.detail.startswith(("HTTP 400", "HTTP 404")):
            raise
    async with _Session(endpoint) as session:
        await session.initialize()
        await session.call("ping", None)


class _Session:
    """The requests of one probe attempt, sharing the session id the server gave."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.session_id: str | None = None
        self.version: str | None = None
        self.next_id = 1

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.session_id is not None:
            # Best effort, shielded and short: a probe must not leak server sessions,
            # nor hang on a server that ignores the DELETE.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(SESSION_END_TIMEOUT),
                contextlib.suppress(OSError, McpError, h11.ProtocolError),
            ):
                await self._send("DELETE", None, "session end")

    async def initialize(self) -> dict[str, Any]:
        result = await self.call(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            },
        )
        version = result.get("protocolVersion")
        if not isinstance(version, str):
            raise McpError("initialize", f"result has no protocolVersion: {_short(result)}")
        self.version = version
        answer = await self._send(
            "POST",
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            "notifications/initialized",
        )
        if answer.status not in (200, 202, 204):
            raise McpError("notifications/initialized", f"HTTP {answer.status}")
        return result

    async def call(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        request_id = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        answer = await self._send("POST", message, method, request_id)
        if method == "initialize":
            self.session_id = answer.headers.get(SESSION_HEADER) or None
        if answer.status != 200:
            raise McpError(method, f"HTTP {answer.status}{_body_hint(answer.body)}")
        return result_of(method, answer.headers.get("content-type", ""), answer.body, request_id)

    async def _send(
        self, method: str, message: dict[str, Any] | None, step: str, request_id: int = 0
    ) -> Answer:
        endpoint = self.endpoint
        payload = b"" if message is None else json.dumps(message).encode()
        headers = [
            ("Host", f"{endpoint.host}:{endpoint.port}"),
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
        ]
        if self.version is not None:
            headers.append((VERSION_HEADER, self.version))
        if self.session_id is not None:
            headers.append((SESSION_HEADER, self.session_id))
        conn = h11.Connection(h11.CLIENT)
        async with await anyio.connect_tcp(endpoint.host, endpoint.port) as stream:
            request = h11.Request(method=method, target=endpoint.target, headers=headers)
            await stream.send(conn.send(request) + conn.send(h11.Data(data=payload)))
            await stream.send(conn.send(h11.EndOfMessage()))
            return await _read_answer(conn, stream, step, request_id)


async def _read_answer(
    conn: h11.Connection, stream: anyio.abc.ByteStream, step: str, request_id: int
) -> Answer:
    """The response; for an event stream, only up to the message answering `request_id`."""
    response: h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                conn.receive_data(await stream.receive(READ_SIZE))
            except anyio.EndOfStream:
                conn.receive_data(b"")
            continue
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_RESPONSE:
                raise McpError(step, f"response larger than {MAX_RESPONSE} bytes")
            assert response is not None
            headers = _headers(response)
            streamed = "text/event-stream" in headers.get("content-type", "")
            text = body.decode(errors="replace") if streamed and request_id else ""
            if text and _find(sse_messages(text), request_id) is not None:
                return Answer(response.status_code, headers, bytes(body))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if response is None:
                raise McpError(step, "connection closed before a response")
            return Answer(response.status_code, _headers(response), bytes(body))


def _headers(response: h11.Response) -> dict[str, str]:
    return {k.decode().lower(): v.decode(errors="replace") for k, v in response.headers}


def result_of(step: str, content_type: str, body: bytes, request_id: int) -> dict[str, Any]:
    """The JSON-RPC `result` answering `request_id` in a response body (JSON, or an
    event stream of JSON messages).

    Raises:
        McpError: no such result — garbage, a JSON-RPC error, or an answer to another id.
    """
    text = body.decode(errors="replace")
    if "text/event-stream" in content_type:
        messages = sse_messages(text)
    elif "json" in content_type:
        messages = [text]
    else:
        raise McpError(step, f"unexpected content type {content_type or 'none'!r}")
    found = _find(messages, request_id)
    if found is None:
        raise McpError(step, f"no JSON-RPC answer to request {request_id}{_body_hint(body)}")
    if "error" in found:
        error = found["error"]
        if isinstance(error, dict):
            raise McpError(step, f"JSON-RPC error {error.get('code')}: {error.get('message')}")
        raise McpError(step, f"JSON-RPC error {error!r}")
    result = found.get("result")
    if not isinstance(result, dict):
        raise McpError(step, f"result is not an object: {_short(result)}")
    return result


def _find(messages: list[str], request_id: int) -> dict[str, Any] | None:
    for raw in messages:
        try:
            decoded = json.loads(raw)
        except ValueError:
            continue
        for message in decoded if isinstance(decoded, list) else [decoded]:
            if (
                isinstance(message, dict)
                and message.get("jsonrpc") == "2.0"
                and message.get("id") == request_id
                and ("result" in message or "error" in message)
            ):
                return message
    return None


def sse_messages(text: str) -> list[str]:
    """The `data` of each complete event in an event stream (fields joined by newlines,
    as the EventSource standard says); an unfinished last event is left out."""
    messages: list[str] = []
    data: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:-1]:
        if not line:
            if data:
                messages.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return messages


def _short(value: object, limit: int = 120) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "…"


def _body_hint(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return f" ({_short(text, 80)})" if text else ""
