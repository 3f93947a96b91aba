"""A small MCP endpoint (standard library only) on $PORT at /mcp, for probe tests.

MODE (environment): `json` answers JSON-RPC with JSON bodies (stateless); `sse` answers
with `text/event-stream` bodies; `stateful` gives a session id at `initialize`, refuses
other requests without it (HTTP 400) and prints `session ended ID` on its DELETE;
`http500` answers every request with HTTP 500; `garbage` answers 200 with a body that is
not JSON-RPC; `rpcerror` answers `tools/list` with a JSON-RPC error. TOOLS is the
comma-separated tool names it lists. It prints `listening` once it accepts connections.
"""

from __future__ import annotations

import json
import os
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODE = os.environ.get("MODE", "json")
TOOLS = [t for t in os.environ.get("TOOLS", "add,multiply").split(",") if t]
SESSIONS: set[str] = set()


def tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} things", "inputSchema": {"type": "object"}}


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    method, request_id = message.get("method"), message.get("id")
    if request_id is None:
        return None  # a notification
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "fake", "version": "1"},
        }
    elif method == "tools/list" and MODE == "rpcerror":
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": "boom"}}
    elif method == "tools/list":
        result = {"tools": [tool(name) for name in TOOLS]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": method}}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self) -> None:
        session = self.headers.get("Mcp-Session-Id", "")
        SESSIONS.discard(session)
        print(f"session ended {session}", flush=True)
        self._send(200, b"", "application/json", {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "http500":
            self._send(500, b"Internal Server Error", "text/plain", {})
            return
        if MODE == "garbage":
            self._send(200, b"<html>hello</html>", "application/json", {})
            return
        message = json.loads(body)
        headers: dict[str, str] = {}
        if MODE == "stateful":
            session = self.headers.get("Mcp-Session-Id")
            if message.get("method") == "initialize":
                session = uuid.uuid4().hex
                SESSIONS.add(session)
                headers["Mcp-Session-Id"] = session
            elif session not in SESSIONS:
                self._send(400, b"missing session", "text/plain", {})
                return
        reply = answer(message)
        if reply is None:
            self._send(202, b"", "application/json", headers)
        elif MODE == "sse":
            event = f"event: message\ndata: {json.dumps(reply)}\n\n".encode()
            self._send(200, b": hello\n\n" + event, "text/event-stream", headers)
        else:
            self._send(200, json.dumps(reply).encode(), "application/json", headers)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
