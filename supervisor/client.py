"""`supervisor.client`: talk to a running supervisor over its control socket.

Standard library only, so that `supervise status` and agents pay almost nothing to
import it. Inside a unit, `Client()` finds the socket through `SUPERVISE_SOCKET`.

    from supervisor.client import Client
    Client().set("alpha", {"TODAY_DATE": "2025-10-02"})   # returns once servers are ready

`AsyncClient` offers the same calls for async code (each call runs in a worker thread).

This module holds the calls and the HTTP exchange; finding a stack file's socket is
`supervisor.socket_registry`, `AsyncClient` is `supervisor.client_async`. Both are
imported only when first needed (a client inside a unit, given `SUPERVISE_SOCKET`, loads
neither); `from supervisor.client import AsyncClient` still works.
"""

from __future__ import annotations

import os

from supervisor import jsonwire  # json.loads/dumps without importing re

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a client 4 ms
if TYPE_CHECKING:  # collections.abc imports collections: 3 ms a client command
    from collections.abc import Generator, Iterator, Mapping, Sequence
    from socket import socket
    from typing import Any

    from supervisor.client_async import AsyncClient as AsyncClient

SOCKET_VARIABLE = "SUPERVISE_SOCKET"
DEFAULT_WAIT = 60.0  # the server's default for a waiting call
TIMEOUT_MARGIN = 30.0  # a socket waits this much longer than the server's own deadline


_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-~")


def quote(text: str, safe: str = "/") -> str:
    """`text` for a URL path: as it is when it is plain (every valid unit or model name),
    else percent-encoded by urllib (whose import a client command need not pay for)."""
    if _PLAIN.issuperset(text.replace("/", "") if "/" in safe else text):
        return text
    from urllib.parse import quote as percent_encoded

    return percent_encoded(text, safe=safe)


class ClientError(Exception):
    """An error answer from the supervisor (or no answer at all)."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        self.code, self.message, self.status = code, message, status
        super().__init__(message)


class NoSupervisorError(ClientError):
    """Nothing answers on the socket."""


def find_socket(explicit: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """The control socket to use, and how it was found."""
    if explicit is not None:
        return os.fspath(explicit), "given"
    from_env = os.environ.get(SOCKET_VARIABLE)
    if from_env:
        return from_env, SOCKET_VARIABLE

    from supervisor.config.locate import find_stack_file
    from supervisor.socket_registry import DEFAULT_SOCKET, socket_from_stack_file

    found = find_stack_file(os.getcwd())
    if found is not None:
        return socket_from_stack_file(found)
    return os.path.abspath(DEFAULT_SOCKET), "no stack file here or above; the default"


class _Response:
    """An HTTP/1.1 response read off a Unix socket: status, then the body (sized or
    chunked). A few lines instead of http.client keep `supervise status` quick to start."""

    def __init__(self, sock: socket) -> None:
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

    def __init__(self, socket: str | os.PathLike[str] | None = None, *, how: str = "") -> None:
        self.socket_path, found = find_socket(socket)
        self.how = how or found

    def _open(self, method: str, path: str, body: Any = None, patient: bool = False) -> _Response:
        """`patient`: a call that waits on the server's side (for stops, starts, its own
        `timeout`), which bounds it: the socket waits as long as the answer takes (a
        unit's `stop_timeout` may be minutes), as `systemctl stop` and `supervisorctl`
        do; Ctrl-C ends the wait. Any other call gives a wedged supervisor 90 s."""
        payload = b"" if body is None else jsonwire.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        # The C socket object: socket.py's wrapper (its enums, selectors) costs a client
        # command ~4 ms to import, for methods this client never calls.
        import _socket

        sock: socket = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)  # type: ignore[assignment]
        sock.settimeout(None if patient else DEFAULT_WAIT + TIMEOUT_MARGIN)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise NoSupervisorError(
                "no_supervisor",
                f"no supervisor answers on {self.socket_path} ({self.how}; is `supervise run` "
                "up? pass -c FILE or set SUPERVISE_SOCKET)",
            ) from exc
        except OSError as exc:
            sock.close()
            raise ClientError("io_error", f"{self.socket_path}: {exc}") from exc
        try:
            try:  # noqa: SIM105  (contextlib.suppress: an import of 2 ms on every command)
                sock.sendall(head.encode() + payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered early (503 busy, 413) and closed: its answer is still readable
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
                error = jsonwire.loads(data)["error"]
                raise ClientError(error["code"], error["message"], response.status)
            except (ValueError, KeyError, TypeError):
                raise ClientError(
                    "http_error", f"HTTP {response.status}: {data[:200]!r}", response.status
                ) from None
        return response

    def _call(
        self, method: str, path: str, body: Any = None, patient: bool = False
    ) -> dict[str, Any]:
        response = self._open(method, path, body, patient)
        try:
            result: dict[str, Any] = jsonwire.loads(response.read())
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
                        yield jsonwire.loads(line)
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
        rollback: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "set": dict(keys),
            "unset": list(unset),
            "wait": wait,
            "rollback": rollback,
        }
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", f"/v1/models/{quote(model, safe='')}/keys", body, True)

    def launch(
        self, model: str, keys: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "keys": dict(keys or {})}
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", "/v1/models", body, True)

    def drop(self, model: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/models/{quote(model, safe='')}", patient=True)

    def _action(self, name: str, action: str, timeout: float | None) -> dict[str, Any]:
        body = {"timeout": timeout} if timeout is not None else {}
        return self._call("POST", f"/v1/units/{quote(name)}/{action}", body, True)

    def start(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        """Start a unit, or every stopped unit of a model (a failed model comes back)."""
        return self._action(unit, "start", timeout)

    def stop(self, unit: str) -> dict[str, Any]:
        return self._action(unit, "stop", None)

    def restart(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return self._action(unit, "restart", timeout)

    def reload(self, timeout: float | None = None) -> dict[str, Any]:
        body = {"timeout": timeout} if timeout is not None else {}
        return self._call("POST", "/v1/reload", body, True)

    def logs(
        self,
        unit: str | None = None,
        *,
        lines: int = 100,
        follow: bool = False,
        events: bool = True,
        since: float | None = None,
        grep: str | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Recent (and with `follow`, live) lines; `events` adds the supervisor's own,
        `since` is a wall-clock time, `grep` a regular expression."""
        query: dict[str, Any] = {"lines": lines, "follow": int(follow), "events": int(events)}
        if unit is not None:
            query["unit"] = unit
        if since is not None:
            query["since"] = since
        if grep is not None:
            query["grep"] = grep
        from urllib.parse import urlencode  # logs only

        return self._stream(f"/v1/logs?{urlencode(query)}")

    def events(self) -> Generator[dict[str, Any], None, None]:
        return self._stream("/v1/events")

    def why(self, unit: str) -> dict[str, Any]:
        """One paragraph explaining the unit's state: `{"unit", "why"}`."""
        return self._call("GET", f"/v1/why/{quote(unit)}")


def __getattr__(name: str) -> Any:
    """`AsyncClient`, imported on first use so that a client command pays only for what
    it calls (PEP 562)."""
    if name == "AsyncClient":
        from supervisor.client_async import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
