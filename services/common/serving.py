"""Serve one MCP server over streamable HTTP on loopback, with ``GET /healthz``.

Shared by ``trade``, ``price`` and ``math`` after their settings passed (this module
imports the MCP SDK and uvicorn; never import it before the environment check).

Invariants: the transport is stateless with JSON responses, so a client keeps working
across a server restart (no session to lose); the server listens on 127.0.0.1 only, or
on the listening socket systemd-style activation handed over (fd 3); the listening
socket is bound only after every import, so an accepted connection is always served; a
line ``<server>: serving ...`` on stdout marks readiness; ``/healthz`` names the server,
its signature, pid and a per-boot random id, so a prober can tell a restart happened.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.common.settings import Listen

HOST = "127.0.0.1"
MCP_PATH = "/mcp"
# How long a stop waits for in-flight requests before uvicorn cancels them; well inside
# any supervisor's stop timeout, so a stop never ends in SIGKILL because of us.
GRACEFUL_SHUTDOWN_SECONDS = 5
# Environment keys of systemd's socket activation, dropped once consumed (as
# sd_listen_fds(unset_environment=1) does) so nothing we spawn inherits them.
_ACTIVATION_KEYS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass(frozen=True)
class Identity:
    """What ``/healthz`` reports, and the ready line says."""

    server: str
    signature: str | None
    today: str | None = None

    def health(self, boot_id: str) -> dict[str, Any]:
        return {
            "server": self.server,
            "signature": self.signature,
            "pid": os.getpid(),
            "boot_id": boot_id,
            "today_date": self.today,
        }


def build_app(mcp: MCPServer, identity: Identity) -> Starlette:
    """The Starlette app: the MCP endpoint at ``/mcp`` plus ``GET /healthz``."""
    boot_id = secrets.token_hex(8)
    body = identity.health(boot_id)

    async def healthz(request: Request) -> Response:
        return JSONResponse(body)

    # custom_route is an untyped decorator factory; calling it plainly keeps mypy strict.
    mcp.custom_route("/healthz", methods=["GET"], include_in_schema=False)(healthz)

    return mcp.streamable_http_app(
        streamable_http_path=MCP_PATH, json_response=True, stateless_http=True, host=HOST
    )


def open_listener(listen: Listen) -> socket.socket:
    """The listening socket: the inherited one, or a fresh loopback bind.

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """
    if listen.fd is not None:
        for key in _ACTIVATION_KEYS:
            os.environ.pop(key, None)
        sock = socket.socket(fileno=listen.fd)
        sock.set_inheritable(False)
        return sock
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, listen.port or 0))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn, announcing readiness once it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self._ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self._ready_line, flush=True)


def serve(mcp: MCPServer, identity: Identity, listen: Listen, details: str = "") -> None:
    """Run the server until SIGTERM/SIGINT; exit 1 with one line if it cannot listen."""
    # Our ready line says it better; keep the SDK's INFO lines for tool failures only.
    logging.getLogger("mcp.server.streamable_http_manager").setLevel(logging.WARNING)
    # "Terminating session: None" after every stateless request (each probe, each ping).
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    app = build_app(mcp, identity)
    try:
        sock = open_listener(listen)
    except OSError as exc:
        sys.stderr.write(f"{identity.server}: cannot listen on {listen}: {exc.strerror or exc}\n")
        raise SystemExit(1) from None
    host, port = sock.getsockname()[:2]
    ready = (
        f"{identity.server}: serving http://{host}:{port}{MCP_PATH} "
        f"(pid {os.getpid()}, signature {identity.signature or '-'}{details})"
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
    )
    _Server(config, ready).run(sockets=[sock])
