"""`supervisor.client`: talk to a running supervisor over its control socket.

Standard library only, so that `supervise status` and agents pay almost nothing to
import it. Inside a unit, `Client()` finds the socket through `SUPERVISE_SOCKET`.

    from supervisor.client import Client
    Client().set("alpha", {"TODAY_DATE": "2025-10-02"})   # returns once servers are ready

`AsyncClient` offers the same calls for async code (each call runs in a worker thread).
"""

from __future__ import annotations

import os
import stat

from supervisor import jsonwire  # json.loads/dumps without importing re

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a client 4 ms
if TYPE_CHECKING:  # collections.abc imports collections: 3 ms a client command
    from collections.abc import Generator, Iterator, Mapping, Sequence
    from socket import socket
    from typing import Any

SOCKET_VARIABLE = "SUPERVISE_SOCKET"
DEFAULT_SOCKET = ".supervise/control.sock"
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


def registry_dir() -> str:
    """Where running supervisors register their socket by stack file (per user)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "supervise")
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"supervise-{os.getuid()}")


def registry_entry(stack_file: str | os.PathLike[str]) -> str | None:
    """The registry entry of a stack file: a symlink to its supervisor's socket."""
    from supervisor.digest import sha256_hex

    resolved = os.path.realpath(stack_file)
    digest = sha256_hex(resolved.encode(errors="surrogateescape"))[:32]
    return os.path.join(registry_dir(), f"{digest}.sock")


def ensure_registry_dir(directory: str | os.PathLike[str]) -> bool:
    """Create the registry directory (0700) or check it is ours and private; a directory
    someone else could write to is never trusted."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


_CONTROL_SOCKET = r"""^\s*control_socket\s*=\s*(?:"([^"\n]*)"|'([^'\n]*)')"""


def socket_from_stack_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The control socket of the supervisor running `path`, and how it was found: the
    registry entry a running supervisor made for this file, else the file's
    `control_socket` (read leniently: a file that does not parse is searched for the
    line), else the default next to the file."""
    path = os.fspath(path)
    entry = registry_entry(path)
    if entry is not None and ensure_registry_dir(os.path.dirname(entry)):
        try:
            return os.readlink(entry), f"the supervisor running {path}"
        except OSError:
            pass
    value, how = DEFAULT_SOCKET, f"the default socket of {path}"
    text = ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        pass
    if path.endswith(".toml") and text:
        import re

        found = re.search(_CONTROL_SOCKET, text, re.M)
        if found is not None:
            value = found.group(1) if found.group(1) is not None else found.group(2)
            how = f"control_socket in {path}"
    socket_path = os.path.expanduser(os.path.expandvars(value))
    if not os.path.isabs(socket_path):
        socket_path = os.path.join(os.path.dirname(os.path.abspath(path)), socket_path)
    return socket_path, how


def find_socket(explicit: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """The control socket to use, and how it was found."""
    if explicit is not None:
        return os.fspath(explicit), "given"
    from_env = os.environ.get(SOCKET_VARIABLE)
    if from_env:
        return from_env, SOCKET_VARIABLE

    from supervisor.config.locate import find_stack_file

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

    def _open(
        self, method: str, path: str, body: Any = None, wait: float | None = None
    ) -> _Response:
        payload = b"" if body is None else jsonwire.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        # The C socket object: socket.py's wrapper (its enums, selectors) costs a client
        # command ~4 ms to import, for methods this client never calls.
        import _socket

        sock: socket = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)  # type: ignore[assignment]
        sock.settimeout((wait if wait is not None else DEFAULT_WAIT) + TIMEOUT_MARGIN)
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
        self, method: str, path: str, body: Any = None, wait: float | None = None
    ) -> dict[str, Any]:
        response = self._open(method, path, body, wait)
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
        return self._call("POST", f"/v1/models/{quote(model, safe='')}/keys", body, timeout)

    def launch(
        self, model: str, keys: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "keys": dict(keys or {})}
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", "/v1/models", body, timeout)

    def drop(self, model: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/models/{quote(model, safe='')}")

    def _action(self, name: str, action: str, timeout: float | None) -> dict[str, Any]:
        body = {"timeout": timeout} if timeout is not None else {}
        return self._call("POST", f"/v1/units/{quote(name)}/{action}", body, timeout)

    def start(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        """Start a unit, or every stopped unit of a model (a failed model comes back)."""
        return self._action(unit, "start", timeout)

    def stop(self, unit: str) -> dict[str, Any]:
        return self._action(unit, "stop", None)

    def restart(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return self._action(unit, "restart", timeout)

    def reload(self, timeout: float | None = None) -> dict[str, Any]:
        body = {"timeout": timeout} if timeout is not None else {}
        return self._call("POST", "/v1/reload", body, timeout)

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


class AsyncClient:
    """The same calls for async code; each runs in a worker thread (anyio)."""

    def __init__(self, socket: str | os.PathLike[str] | None = None) -> None:
        self._client = Client(socket)

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
        rollback: bool = True,
    ) -> dict[str, Any]:
        return await self._run(
            "set", model, keys, unset=unset, wait=wait, timeout=timeout, rollback=rollback
        )

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

    async def reload(self, timeout: float | None = None) -> dict[str, Any]:
        return await self._run("reload", timeout)

    async def why(self, unit: str) -> dict[str, Any]:
        return await self._run("why", unit)
