"""The agent's MCP clients: one per server, opened once, surviving server restarts.

The servers are stateless streamable-HTTP endpoints, so a client needs no session that a
restart could lose; what a restart does cause is refused connections while the new
process binds. ``ReconnectingTransport`` retries exactly those — a refused connect means
the request never left, so retrying is safe even for ``buy`` — with a bounded backoff.

Invariants: keep-alive is off (loopback connects are cheap, and a pooled connection to a
server that has since restarted is never reused); a tool's failure (``isError``, a
protocol error, an unexpected result shape) is a ``ToolFailure`` carrying the server's
text, never a default value; business rejections (``{"error": ...}`` results) are
returned like any other result — deciding what they mean is the caller's job.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

# How long refused connections are retried before the call fails: covers a server restart.
CONNECT_RETRY_SECONDS = 15.0
# Backoff between connection attempts: starts small (a restart takes well under a second),
# doubles, and is capped so a server back up is noticed quickly.
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 1.0
# Upper bound for one tool call's answer, so a wedged server cannot hang the run.
CALL_TIMEOUT_SECONDS = 60.0
# Upper bound for connecting, writing and pooling on one HTTP request.
HTTP_TIMEOUT_SECONDS = 10.0


class ToolFailure(Exception):
    """A tool call failed: the server said so, or it could not be reached or understood."""

    def __init__(self, server: str, tool: str, message: str) -> None:
        self.server = server
        self.tool = tool
        self.message = message
        super().__init__(f"{tool} on {server}: {message}")


class ReconnectingTransport(httpx2.AsyncBaseTransport):
    """An HTTP transport that retries refused connections for ``CONNECT_RETRY_SECONDS``."""

    def __init__(self, retry_seconds: float = CONNECT_RETRY_SECONDS) -> None:
        self._inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0))
        self._retry_seconds = retry_seconds

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = anyio.current_time() + self._retry_seconds
        delay = FIRST_RETRY_DELAY
        announced = False
        while True:
            try:
                return await self._inner.handle_async_request(request)
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
                if anyio.current_time() + delay > deadline:
                    raise
                if not announced:
                    print(
                        f"agent: {request.url.host}:{request.url.port} refused ({exc}); "
                        f"retrying for up to {self._retry_seconds:g} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    announced = True
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _text(content: list[Any]) -> str:
    return (
        " ".join(block.text for block in content if isinstance(block, TextContent)) or "(no text)"
    )


class Toolbox:
    """MCP clients for named servers (e.g. trade, price, math), open for a whole run."""

    def __init__(self, urls: dict[str, str], *, retry_seconds: float = CONNECT_RETRY_SECONDS):
        self._urls = urls
        self._retry_seconds = retry_seconds
        self._clients: dict[str, Client] = {}
        self._stack = AsyncExitStack()

    def __repr__(self) -> str:
        state = "open" if self._clients else "closed"
        return f"<Toolbox {state}: {', '.join(f'{n} {u}' for n, u in self._urls.items())}>"

    async def __aenter__(self) -> Toolbox:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    transport=ReconnectingTransport(self._retry_seconds),
                    timeout=httpx2.Timeout(HTTP_TIMEOUT_SECONDS, read=CALL_TIMEOUT_SECONDS),
                )
            )
            for name, url in self._urls.items():
                transport = streamable_http_client(url, http_client=http)
                client = Client(transport, read_timeout_seconds=CALL_TIMEOUT_SECONDS)
                self._clients[name] = await stack.enter_async_context(client)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._clients.clear()
        await self._stack.aclose()

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call ``tool`` on ``server`` and return its structured result.

        Raises:
            ToolFailure: ``isError``, a protocol error, or a result that is not an object.
        """
        try:
            result = await self._clients[server].call_tool(tool, arguments)
        except MCPError as exc:
            raise ToolFailure(server, tool, f"protocol error {exc}") from exc
        if result.is_error:
            raise ToolFailure(server, tool, _text(result.content))
        structured = result.structured_content
        if not isinstance(structured, dict):
            raise ToolFailure(server, tool, f"unexpected result {_text(result.content)!r}")
        return structured
