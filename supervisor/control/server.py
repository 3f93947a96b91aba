"""The control API on the Unix socket, and read-only health/status on the `http` port.

Authority comes from the socket's peer credentials: a caller inside a unit's process
tree acts for that unit's model only (read status, change its own model's keys); any
other local caller of the same user is an operator. Mutating calls are never served on
the TCP port.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import anyio
import anyio.abc
import psutil

from supervisor.config.load import settings_value
from supervisor.control.http import ApiError, Request, Response, serve
from supervisor.errors import ConfigError, Problem
from supervisor.runtime.unit import LogRecord, UnitRuntime
from supervisor.secrets import mask, redact
from supervisor.state import State

if TYPE_CHECKING:
    from supervisor.runtime.control import LiveSupervisor

ACTIONS = ("start", "stop", "restart")
SET_FIELDS = {"set", "unset", "wait", "timeout"}
LAUNCH_FIELDS = {"model", "keys", "timeout"}


@contextlib.contextmanager
def _api_errors() -> Any:
    from supervisor.runtime.control import ControlError

    try:
        yield
    except ControlError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc


class Caller:
    """Who is on the other end of the control socket."""

    def __init__(self, pid: int | None, unit: UnitRuntime | None, stack_member: bool) -> None:
        self.pid, self.unit, self.stack_member = pid, unit, stack_member

    @property
    def operator(self) -> bool:
        return self.unit is None and not self.stack_member

    def describe(self) -> str:
        if self.unit is not None:
            return f"a process of unit {self.unit.name} (pid {self.pid})"
        return f"pid {self.pid}, a process of this stack not proven to belong to a unit"


def peer_pid(stream: Any) -> int | None:
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", raw)[0]
    return pid


def identify(supervisor: LiveSupervisor, pid: int | None) -> Caller:
    """Who the peer is, failing closed: a caller is an operator only with positive proof
    that it is outside this supervisor's tree.

    A unit is recognised by its leader among the caller's ancestors. A caller whose
    ancestry reaches the supervisor (an orphan it adopted, a zygote's child) or that
    carries a unit marker without that ancestry, or that is gone before it could be
    looked at, is a member of the stack without a model: it may read status only.
    """
    if pid is None:
        return Caller(None, None, True)
    try:
        proc = psutil.Process(pid)
        chain = [proc, *proc.parents()]
    except psutil.Error:
        return Caller(pid, None, True)
    leaders = {r.child.pid: r for r in supervisor.units.values() if r.child is not None}
    own = {os.getpid(), *supervisor.helper_pids()}
    for link in chain:
        if link.pid in leaders:
            return Caller(pid, leaders[link.pid], True)
        if link.pid in own:
            return Caller(pid, None, True)
    marker = f"SUPERVISE_ENV={supervisor.runtime_dir}/".encode()
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return Caller(pid, None, True)
    if any(var.startswith(marker) for var in environ):
        return Caller(pid, None, True)
    return Caller(pid, None, False)


def process_table() -> dict[int, tuple[int, float, int]]:
    """pid → (ppid, cpu seconds, rss) for every process, in one pass over /proc."""
    table = {}
    for proc in psutil.process_iter(["ppid", "cpu_times", "memory_info"]):
        info = proc.info
        if info["cpu_times"] is None or info["memory_info"] is None:
            continue
        times = info["cpu_times"]
        table[proc.pid] = (info["ppid"], times.user + times.system, info["memory_info"].rss)
    return table


def tree_usage(
    leader: int, table: dict[int, tuple[int, float, int]], children: dict[int, list[int]]
) -> tuple[float, int]:
    """CPU seconds and RSS summed over `leader` and its descendants."""
    cpu, rss, todo = 0.0, 0, [leader]
    while todo:
        pid = todo.pop()
        if pid in table:
            cpu += table[pid][1]
            rss += table[pid][2]
        todo.extend(children.get(pid, ()))
    return round(cpu, 2), rss


def status_document(
    supervisor: LiveSupervisor, *, full: bool, usage: bool = True
) -> dict[str, Any]:
    table = process_table() if usage else {}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    units = []
    for runtime in supervisor.units.values():
        record = supervisor.unit_status(runtime)
        child = runtime.child
        if usage and child is not None and child.returncode is None:
            record["cpu"], record["rss"] = tree_usage(child.pid, table, children)
        else:
            record["cpu"], record["rss"] = None, None
        units.append(record)
    document: dict[str, Any] = {
        "supervisor": {
            "pid": os.getpid(),
            "stack": str(supervisor.loaded.file),
            "socket": supervisor.socket_path,
        },
        "units": units,
        "config_error": supervisor.config_error or None,
    }
    if full:
        document["models"] = {
            m: {k: redact(k, v) for k, v in sorted(supervisor.model_keys(m).items())}
            for m in supervisor.models
        }
    return document


def readiness(supervisor: LiveSupervisor) -> dict[str, str]:
    """Required units that are not ready, with why."""
    unready = {}
    for runtime in supervisor.units.values():
        spec, status = runtime.unit.spec, runtime.status
        if not spec.required:
            continue
        if status.state is State.RUNNING and status.ready:
            continue
        if status.state is State.EXITED and status.exit_code == 0:  # completed, or done
            continue
        unready[runtime.name] = status.describe()
    return unready


class ControlApi:
    """Routes of the Unix-socket API."""

    def __init__(self, supervisor: LiveSupervisor) -> None:
        self.sv = supervisor

    async def handle(self, request: Request) -> Response:
        caller = identify(self.sv, request.peer)
        parts = [unquote(p) for p in request.path.split("/") if p]
        if parts[:1] != ["v1"]:
            raise ApiError(404, "not_found", f"no such endpoint {request.path!r}; try /v1/status")
        parts = parts[1:]
        with _api_errors():
            return await self._route(request, parts, caller)

    def _forbid(self, caller: Caller, what: str) -> None:
        if not caller.operator:
            model = caller.unit.unit.model if caller.unit is not None else None
            scope = f"read status and change model {model}'s keys" if model else "read status"
            raise ApiError(403, "forbidden", f"{caller.describe()} may only {scope}, not {what}")

    async def _route(self, request: Request, parts: list[str], caller: Caller) -> Response:
        method = request.method
        if method == "GET" and parts == ["status"]:
            return Response(body=status_document(self.sv, full=caller.operator))
        if parts[:1] == ["units"] and len(parts) >= 2:
            if method == "GET" and parts[-1] not in ACTIONS:
                unit = self.sv.unit("/".join(parts[1:]))
                return Response(body=self.sv.unit_status(unit))
            if method == "POST" and parts[-1] in ACTIONS:
                name = "/".join(parts[1:-1])
                self._forbid(caller, f"{parts[-1]} {name}")
                timeout = request.number("timeout", float("inf"))
                action = getattr(self.sv, f"{parts[-1]}_unit")
                if parts[-1] == "stop":
                    return Response(body=await action(name))
                return Response(body=await action(name, timeout))
        if parts == ["models"] and method == "POST":
            self._forbid(caller, "launch a model")
            body = _fields(request, LAUNCH_FIELDS)
            model = _string(body, "model")
            keys = _string_map(body.get("keys", {}), "keys")
            answer = await self.sv.launch(model, keys, timeout=_timeout(body))
            return Response(201, answer)
        if parts[:1] == ["models"] and len(parts) == 2 and method == "DELETE":
            self._forbid(caller, f"drop model {parts[1]}")
            return Response(body=await self.sv.drop(parts[1]))
        if parts[:1] == ["models"] and len(parts) == 3 and parts[2] == "keys" and method == "POST":
            model = parts[1]
            if not caller.operator and (caller.unit is None or caller.unit.unit.model != model):
                self._forbid(caller, f"change model {model}'s keys")
            body = _fields(request, SET_FIELDS)
            keys = _string_map(body.get("set", {}), "set")
            unset = body.get("unset", [])
            if not isinstance(unset, list) or not all(isinstance(k, str) for k in unset):
                raise ApiError(422, "invalid", "unset must be a list of key names")
            wait = body.get("wait", True)
            if not isinstance(wait, bool):
                raise ApiError(422, "invalid", f"wait must be true or false, got {wait!r}")
            answer = await self.sv.set_keys(model, keys, unset, wait=wait, timeout=_timeout(body))
            return Response(body=answer)
        if parts == ["reload"] and method == "POST":
            self._forbid(caller, "reload the stack")
            return Response(body=await self.sv.reload())
        if parts == ["logs"] and method == "GET":
            self._forbid(caller, "read logs")
            return self._logs(request)
        if parts == ["events"] and method == "GET":
            return Response(stream=self._events())
        raise ApiError(404, "not_found", f"no such endpoint {method} {request.path!r}")

    def _logs(self, request: Request) -> Response:
        unit = request.query.get("unit", [None])[-1]
        if unit is not None:
            self.sv.unit(unit)
        lines = int(request.number("lines", 100))
        records: list[LogRecord] = []
        for runtime in self.sv.units.values():
            if unit is None or runtime.name == unit:
                records.extend(runtime.logs)
        records.sort(key=lambda r: r.ts)
        recent = records[-lines:] if lines > 0 else []
        follow = request.flag("follow")
        return Response(stream=self._log_stream(recent, unit, follow))

    async def _log_stream(
        self, recent: list[LogRecord], unit: str | None, follow: bool
    ) -> AsyncIterator[dict[str, Any]]:
        secrets = self.sv.printer.secrets
        for record in recent:
            yield _log_json(record, secrets)
        if not follow:
            return
        receive = self.sv.subscribe_logs()
        async with receive:
            async for record in receive:
                if unit is None or record.unit == unit:
                    yield _log_json(record, secrets)

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        receive = self.sv.subscribe()
        async with receive:
            async for event in receive:
                yield {
                    "ts": event.ts,
                    "unit": event.unit,
                    "state": str(event.new.state),
                    "ready": event.new.ready,
                    "pid": event.new.pid,
                    "reason": mask(event.new.reason, self.sv.printer.secrets),
                }


def _log_json(record: LogRecord, secrets: list[str]) -> dict[str, Any]:
    return {
        "ts": record.ts,
        "unit": record.unit,
        "stream": record.stream,
        "line": mask(record.line, secrets),
    }


def _fields(request: Request, allowed: set[str]) -> dict[str, Any]:
    body = request.json()
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            "bad_request",
            f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
        )
    return body


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"{name} must be a string, got {value!r}")
    return value


def _string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ApiError(422, "invalid", f"{name} must be an object of KEY: VALUE strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ApiError(422, "invalid", f"{name}.{key} must be a string, got {item!r}")
    return value


def _timeout(body: dict[str, Any]) -> float | None:
    value = body.get("timeout")
    if value is None:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ApiError(422, "invalid", f"timeout must be a positive number, got {value!r}")
    return float(value)


class HealthApi:
    """Read-only routes of the TCP port."""

    def __init__(self, supervisor: LiveSupervisor) -> None:
        self.sv = supervisor

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise ApiError(
                405,
                "method_not_allowed",
                "this port is read-only; changes go through the control socket",
            )
        if request.path == "/healthz":
            return Response(body={"status": "ok", "time": time.time()})
        if request.path == "/readyz":
            unready = readiness(self.sv)
            if unready:
                return Response(503, {"status": "unready", "units": unready})
            return Response(body={"status": "ready"})
        if request.path == "/status":
            return Response(body=status_document(self.sv, full=False))
        raise ApiError(404, "not_found", f"no such endpoint {request.path!r}; try /readyz")


def _prepare_socket(path: Path, stack_file: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_uid == os.getuid():
        path.parent.chmod(0o700)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: its supervisor is gone
        else:
            raise ConfigError(
                [
                    Problem(
                        stack_file,
                        "supervise.control_socket",
                        f"another supervisor is running on {path}",
                    )
                ]
            )
        finally:
            probe.close()


async def start_servers(supervisor: LiveSupervisor, tg: anyio.abc.TaskGroup) -> None:
    """Bind the control socket (and the health port, if configured) and serve them."""
    path = Path(supervisor.socket_path)
    _prepare_socket(path, str(supervisor.loaded.file))
    listener = await anyio.create_unix_listener(path)
    path.chmod(0o600)
    supervisor.on_exit(lambda: path.unlink(missing_ok=True))
    tg.start_soon(serve, listener, ControlApi(supervisor).handle, peer_pid)
    address = settings_value(supervisor.loaded, "http")
    if address:
        host, _, port = address.rpartition(":")
        try:
            tcp = await anyio.create_tcp_listener(
                local_host=host, local_port=int(port), reuse_port=False
            )
        except OSError as exc:
            raise ConfigError(
                [
                    Problem(
                        str(supervisor.loaded.file),
                        "supervise.http",
                        f"cannot listen on {address}: {exc.strerror}",
                    )
                ]
            ) from exc
        bound = tcp.extra(anyio.abc.SocketAttribute.local_port)
        supervisor.printer.note(f"health and status on http://{host}:{bound}/readyz")
        tg.start_soon(serve, tcp, HealthApi(supervisor).handle, lambda _s: None)
