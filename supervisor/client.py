"""`supervisor.client`: talk to a running supervisor over its control socket.

Standard library only, so that `supervise status` and agents pay almost nothing to
import it. Inside a unit, `Client()` finds the socket through `SUPERVISE_SOCKET`.

    from supervisor.client import Client
    Client().set("alpha", {"TODAY_DATE": "2025-10-02"})   # returns once servers are ready

`AsyncClient` offers the same calls for async code (each call runs in a worker thread).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

SOCKET_VARIABLE = "SUPERVISE_SOCKET"
DEFAULT_SOCKET = ".supervise/control.sock"
DEFAULT_TIMEOUT = 300.0  # a set waits for restarts; the server bounds each wait itself


class ClientError(Exception):
    """An error answer from the supervisor (or no answer at all)."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        self.code, self.message, self.status = code, message, status
        super().__init__(message)


class NoSupervisorError(ClientError):
    """Nothing answers on the socket."""


def socket_from_stack_file(path: Path) -> str:
    """The control socket a stack file names (read without validating the whole file)."""
    import tomllib

    value = DEFAULT_SOCKET
    if path.suffix == ".toml":
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            document = {}
        if path.name == "pyproject.toml":
            document = document.get("tool", {}).get("supervise", {})
        value = document.get("supervise", {}).get("control_socket", DEFAULT_SOCKET)
    socket_path = Path(os.path.expandvars(value)).expanduser()
    if not socket_path.is_absolute():
        socket_path = path.absolute().parent / socket_path
    return str(socket_path)


def find_socket(explicit: str | os.PathLike[str] | None = None) -> str:
    if explicit is not None:
        return os.fspath(explicit)
    from_env = os.environ.get(SOCKET_VARIABLE)
    if from_env:
        return from_env
    for name in ("supervise.toml", "pyproject.toml", "Procfile"):
        if Path(name).is_file():
            return socket_from_stack_file(Path(name))
    return str(Path(DEFAULT_SOCKET).absolute())


class _Response:
    """An HTTP/1.1 response read off a Unix socket: status, then the body (sized or
    chunked). A few lines instead of http.client keep `supervise status` quick to start."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split()[1])
        except (IndexError, ValueError) as exc:
            raise ClientError("http_error", f"malformed response {lines[0]!r}") from exc
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ClientError("io_error", "the supervisor closed the connection")
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ClientError("io_error", "the supervisor closed the connection")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def chunks(self) -> Iterator[bytes]:
        if self.headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    return
                yield self._exactly(size)
                self._exactly(2)
        elif "content-length" in self.headers:
            yield self._exactly(int(self.headers["content-length"]))
        else:
            while self._fill():
                pass
            yield self.buffer

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending

    def close(self) -> None:
        self.sock.close()


class Client:
    """Synchronous client; every method returns the decoded JSON answer."""

    def __init__(
        self, socket: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.socket_path = find_socket(socket)
        self.timeout = timeout

    def _open(self, method: str, path: str, body: Any = None) -> _Response:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise NoSupervisorError(
                "no_supervisor",
                f"no supervisor answers on {self.socket_path} "
                "(is `supervise run` up? pass -c FILE or set SUPERVISE_SOCKET)",
            ) from exc
        except OSError as exc:
            sock.close()
            raise ClientError("io_error", f"{self.socket_path}: {exc}") from exc
        try:
            sock.sendall(head.encode() + payload)
            response = _Response(sock)
        except OSError as exc:
            sock.close()
            raise ClientError("io_error", f"{self.socket_path}: {exc}") from exc
        except ClientError:
            sock.close()
            raise
        if response.status >= 400:
            try:
                data = response.read()
            finally:
                response.close()
            try:
                error = json.loads(data)["error"]
                raise ClientError(error["code"], error["message"], response.status)
            except (ValueError, KeyError, TypeError):
                raise ClientError(
                    "http_error", f"HTTP {response.status}: {data[:200]!r}", response.status
                ) from None
        return response

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._open(method, path, body)
        try:
            result: dict[str, Any] = json.loads(response.read())
        finally:
            response.close()
        return result

    def _stream(self, path: str) -> Generator[dict[str, Any], None, None]:
        """Open the stream now (so nothing that happens after the call is missed) and
        return an iterator over its records."""
        response = self._open("GET", path)
        response.sock.settimeout(None)  # a followed stream waits as long as it must

        def records() -> Generator[dict[str, Any], None, None]:
            try:
                for line in response.lines():
                    if line.strip():
                        yield json.loads(line)
            finally:
                response.close()

        return records()

    def status(self, unit: str | None = None) -> dict[str, Any]:
        if unit is not None:
            return self._call("GET", f"/v1/units/{quote(unit)}")
        return self._call("GET", "/v1/status")

    def set(
        self,
        model: str,
        keys: Mapping[str, str],
        *,
        unset: Sequence[str] = (),
        wait: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"set": dict(keys), "unset": list(unset), "wait": wait}
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", f"/v1/models/{quote(model, safe='')}/keys", body)

    def launch(
        self, model: str, keys: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "keys": dict(keys or {})}
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", "/v1/models", body)

    def drop(self, model: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/models/{quote(model, safe='')}")

    def _unit_action(self, unit: str, action: str, timeout: float | None) -> dict[str, Any]:
        query = f"?{urlencode({'timeout': timeout})}" if timeout is not None else ""
        return self._call("POST", f"/v1/units/{quote(unit)}/{action}{query}")

    def start(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return self._unit_action(unit, "start", timeout)

    def stop(self, unit: str) -> dict[str, Any]:
        return self._unit_action(unit, "stop", None)

    def restart(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return self._unit_action(unit, "restart", timeout)

    def reload(self) -> dict[str, Any]:
        return self._call("POST", "/v1/reload")

    def logs(
        self, unit: str | None = None, *, lines: int = 100, follow: bool = False
    ) -> Generator[dict[str, Any], None, None]:
        query: dict[str, Any] = {"lines": lines, "follow": int(follow)}
        if unit is not None:
            query["unit"] = unit
        return self._stream(f"/v1/logs?{urlencode(query)}")

    def events(self) -> Generator[dict[str, Any], None, None]:
        return self._stream("/v1/events")


class AsyncClient:
    """The same calls for async code; each runs in a worker thread (anyio)."""

    def __init__(
        self, socket: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._client = Client(socket, timeout=timeout)

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        import functools

        import anyio.to_thread

        call = functools.partial(getattr(self._client, method), *args, **kwargs)
        result: dict[str, Any] = await anyio.to_thread.run_sync(call)
        return result

    async def status(self, unit: str | None = None) -> dict[str, Any]:
        return await self._run("status", unit)

    async def set(
        self,
        model: str,
        keys: Mapping[str, str],
        *,
        unset: Sequence[str] = (),
        wait: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return await self._run("set", model, keys, unset=unset, wait=wait, timeout=timeout)

    async def launch(
        self, model: str, keys: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self._run("launch", model, keys, timeout=timeout)

    async def drop(self, model: str) -> dict[str, Any]:
        return await self._run("drop", model)

    async def start(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return await self._run("start", unit, timeout)

    async def stop(self, unit: str) -> dict[str, Any]:
        return await self._run("stop", unit)

    async def restart(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return await self._run("restart", unit, timeout)

    async def reload(self) -> dict[str, Any]:
        return await self._run("reload")


# ------------------------------------------------------------------ formatting (CLI)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value / (1024 * 1024):.1f}M"


def format_status(answer: dict[str, Any]) -> str:
    units = answer.get("units", [answer] if "unit" in answer else [])
    header = ("UNIT", "STATE", "READY", "PID", "PORT", "RESTARTS", "UPTIME", "CPU", "RSS", "REASON")
    rows = [header]
    for u in units:
        rows.append(
            (
                u["unit"],
                u["state"],
                "yes" if u.get("ready") else "-",
                str(u.get("pid") or "-"),
                str(u.get("port") or "-"),
                str(u.get("restarts", 0)),
                _age(u.get("uptime")),
                "-" if u.get("cpu") is None else f"{u['cpu']:.1f}s",
                _size(u.get("rss")),
                u.get("reason") or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
        for r in rows
    ]
    if answer.get("config_error"):
        lines.append(
            f"config error (the stack runs on the last good file):\n{answer['config_error']}"
        )
    return "\n".join(line.rstrip() for line in lines)


def format_change(answer: dict[str, Any]) -> str:
    if answer.get("message"):
        return str(answer["message"])
    parts = []
    for key in ("changed", "added", "removed", "restarted", "stopped"):
        if answer.get(key):
            parts.append(f"{key}: {', '.join(answer[key])}")
    for unit, reason in (answer.get("failed") or {}).items():
        parts.append(f"FAILED {unit}: {reason}")
    return "\n".join(parts) or "nothing changed"


def format_log(record: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(record.get("ts", 0)))
    return f"{stamp} {record.get('unit')} | {record.get('line')}"
