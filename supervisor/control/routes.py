"""The control API on the Unix socket: an explicit route table onto the `ControlPlane`,
field checks, authority, and the mapping of error kinds to HTTP statuses.

Authority: a caller inside a unit's process tree acts for that unit's model only — it
may read status and events and change its own model's keys; any other local caller of
the same user is an operator. Results are rendered to JSON here; the runtime returns
typed values.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import anyio

from supervisor.config.spec import check_regex
from supervisor.control.authority import Caller, identify
from supervisor.control.http import ApiError, Request, Response
from supervisor.control.plane import (
    DEFAULT_WAIT,
    MAX_WAIT,
    ChangeResult,
    ControlPlane,
    LaunchResult,
    LogRecord,
    ReloadResult,
    UnitResult,
)
from supervisor.control.status import status_document, unit_document
from supervisor.control.why import explain
from supervisor.errors import ControlError
from supervisor.observe import ToolsEvent
from supervisor.osproc.usage import TreeUsage, process_table
from supervisor.output.format import event_record, model_event_record, tools_event_record
from supervisor.state import Event

STATUS_OF_KIND = {
    "bad_request": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
    "invalid_config": 422,
    "unavailable": 503,
}

Handler = Callable[["ControlApi", Request, Caller, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    operator_only: str = ""  # what the caller wants to do, for the 403 message ("" = anyone)


def _route(method: str, path: str, handler: Handler, operator_only: str = "") -> Route:
    return Route(method, re.compile(path + r"\Z"), handler, operator_only)


class ControlApi:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    async def handle(self, request: Request) -> Response:
        caller = identify(self.plane.membership(), request.peer)
        path = unquote(request.path)
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is None or request.method != route.method:
                continue
            params = match.groupdict()
            if route.operator_only and not caller.operator:
                _forbid(caller, route.operator_only.format(**params))
            try:
                if request.method == "GET":
                    return await route.handler(self, request, caller, params)
                return await self._unless_shutdown(route.handler, request, caller, params)
            except ControlError as exc:
                raise ApiError(STATUS_OF_KIND[exc.kind], exc.kind, exc.message) from exc
        if not path.startswith("/v1/"):
            raise ApiError(404, "not_found", f"no such endpoint {request.path!r}; try /v1/status")
        raise ApiError(404, "not_found", f"no such endpoint {request.method} {request.path!r}")

    # -------------------------------------------------------------- handlers

    async def _unless_shutdown(
        self, handler: Handler, request: Request, caller: Caller, params: dict[str, str]
    ) -> Response:
        """Run a change; one under way when the stack begins to stop (or asked after
        that) is answered 503 with why, at once: its units stop with the stack, and what
        it waited for will not come."""
        answer: Response | None = None
        error: Exception | None = None
        if not self.plane.shutdown_reason():
            async with anyio.create_task_group() as tg:

                async def change() -> None:
                    nonlocal answer, error
                    try:
                        answer = await handler(self, request, caller, params)
                    except Exception as exc:  # raised as itself, not in a group
                        error = exc
                    tg.cancel_scope.cancel()

                async def shutdown() -> None:
                    await self.plane.until_shutdown()
                    tg.cancel_scope.cancel()

                tg.start_soon(change)
                tg.start_soon(shutdown)
        if error is not None:
            raise error
        if answer is not None:
            return answer
        why = self.plane.shutdown_reason()
        raise ControlError(
            "unavailable",
            f"the stack is shutting down ({why}): {request.method} {request.path} was not "
            "completed",
        )

    async def status(self, request: Request, caller: Caller, _: dict[str, str]) -> Response:
        return Response(body=status_document(self.plane, full=caller.operator))

    async def why(self, request: Request, caller: Caller, p: dict[str, str]) -> Response:
        history = self.plane.history(p["name"])
        owner = history.view.model
        if not caller.operator and (owner is None or caller.model != owner):
            # It quotes the unit's stderr: like logs, that is its model's or an operator's.
            _forbid(caller, f"read why {p['name']}")
        text = explain(history, self.plane.view())
        return Response(body={"unit": p["name"], "why": self.plane.redactor.mask(text)})

    async def unit(self, request: Request, caller: Caller, p: dict[str, str]) -> Response:
        view = self.plane.unit_view(p["name"])
        usage = TreeUsage(process_table()) if view.leader is not None else None
        return Response(body=unit_document(view, self.plane.redactor, usage))

    async def action(self, request: Request, caller: Caller, p: dict[str, str]) -> Response:
        body = _fields(request, {"timeout"})
        name, verb = p["name"], p["verb"]
        if verb == "stop":
            result = await self.plane.stop(name)
        elif verb == "start":
            result = await self.plane.start(name, timeout=_timeout(body))
        else:
            result = await self.plane.restart(name, timeout=_timeout(body))
        return Response(body=self._unit_result(result))

    async def launch(self, request: Request, caller: Caller, _: dict[str, str]) -> Response:
        body = _fields(request, {"model", "keys", "timeout"})
        model = _string(body, "model")
        keys = _string_map(body.get("keys", {}), "keys")
        result = await self.plane.launch(model, keys, timeout=_timeout(body))
        return Response(201, self._launch_result(result))

    async def drop(self, request: Request, caller: Caller, p: dict[str, str]) -> Response:
        result = await self.plane.drop(p["model"])
        return Response(body={"model": result.model, "stopped": list(result.stopped)})

    async def set_keys(self, request: Request, caller: Caller, p: dict[str, str]) -> Response:
        model = p["model"]
        if not caller.operator and caller.model != model:
            _forbid(caller, f"change model {model}'s keys")
        body = _fields(request, {"set", "unset", "wait", "timeout", "rollback"})
        keys = _string_map(body.get("set", {}), "set")
        unset = body.get("unset", [])
        if not isinstance(unset, list) or not all(isinstance(k, str) for k in unset):
            raise ApiError(422, "invalid", "unset must be a list of key names")
        result = await self.plane.set_keys(
            model,
            keys,
            tuple(unset),
            wait=_flag(body, "wait", True),
            timeout=_timeout(body),
            rollback=_flag(body, "rollback", True),
        )
        return Response(body=_change(result))

    async def reload(self, request: Request, caller: Caller, _: dict[str, str]) -> Response:
        body = _fields(request, {"timeout"})
        return Response(body=_reload(await self.plane.reload(timeout=_timeout(body))))

    async def logs(self, request: Request, caller: Caller, _: dict[str, str]) -> Response:
        unit = request.query.get("unit", [None])[-1]
        lines = int(request.number("lines", 100))
        since = request.number("since", 0.0)
        grep = _pattern(request.query.get("grep", [None])[-1])
        events = request.query.get("events", ["1"])[-1] not in ("0", "false", "no")
        mask = self.plane.redactor.mask

        def wanted(record: LogRecord) -> bool:
            if not events and record.stream == "event":
                return False
            if unit is not None and unit not in (record.unit, record.about):
                return False
            # Searched as shown: a secret is never confirmed by what a pattern matches.
            return record.ts >= since and (grep is None or bool(grep.search(mask(record.line))))

        recent = [r for r in self.plane.recent_logs(unit, events=events) if wanted(r)]
        recent = recent[-lines:] if lines > 0 else []
        return Response(stream=self._log_stream(recent, wanted, request.flag("follow")))

    async def events(self, request: Request, caller: Caller, _: dict[str, str]) -> Response:
        return Response(stream=self._events())

    # -------------------------------------------------------------- rendering

    def _unit_result(self, result: UnitResult) -> dict[str, Any]:
        redactor = self.plane.redactor
        answer: dict[str, Any] = {
            "unit": result.name,
            "message": redactor.mask(result.message),
            "failed": {k: redactor.mask(v) for k, v in result.failed.items()},
        }
        if result.units:
            answer["status"] = unit_document(result.units[0], redactor)
        return answer

    def _launch_result(self, result: LaunchResult) -> dict[str, Any]:
        redactor = self.plane.redactor
        return {
            "model": result.model,
            "units": {u.name: unit_document(u, redactor) for u in result.units},
            "ports": {u.process: u.port for u in result.units if u.port is not None},
            "failed": {k: redactor.mask(v) for k, v in result.failed.items()},
        }

    async def _log_stream(
        self, recent: list[LogRecord], wanted: Callable[[LogRecord], bool], follow: bool
    ) -> AsyncIterator[dict[str, Any]]:
        mask = self.plane.redactor.mask
        for record in recent:
            yield _log_json(record, mask)
        if not follow:
            return
        with self.plane.subscribe_logs() as receive:
            async for record in receive:
                if wanted(record):
                    yield _log_json(record, mask)

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        mask = self.plane.redactor.mask
        with self.plane.subscribe_events() as receive:
            async for event in receive:
                if isinstance(event, Event):
                    record = event_record(event)
                    record["state"] = record.pop("event")
                elif isinstance(event, ToolsEvent):  # "state": "tools", like every record
                    record = tools_event_record(event)
                    record["state"] = record.pop("event")
                else:
                    record = model_event_record(event)
                    record["state"] = record.pop("event")
                if "reason" in record:
                    record["reason"] = mask(record["reason"])
                yield record


ROUTES = (
    _route("GET", r"/v1/status", ControlApi.status),
    _route(
        "POST",
        r"/v1/(?:units|models)/(?P<name>.+)/(?P<verb>start|stop|restart)",
        ControlApi.action,
        "{verb} {name}",
    ),
    _route("GET", r"/v1/why/(?P<name>.+)", ControlApi.why),
    _route("GET", r"/v1/units/(?P<name>.+)", ControlApi.unit),
    _route("POST", r"/v1/models", ControlApi.launch, "launch a model"),
    _route("DELETE", r"/v1/models/(?P<model>(?s:.+))", ControlApi.drop, "drop model {model}"),
    _route("POST", r"/v1/models/(?P<model>(?s:.+))/keys", ControlApi.set_keys),
    _route("POST", r"/v1/reload", ControlApi.reload, "reload the stack"),
    _route("GET", r"/v1/logs", ControlApi.logs, "read logs"),
    _route("GET", r"/v1/events", ControlApi.events),
)


def _forbid(caller: Caller, what: str) -> None:
    model = caller.model
    scope = f"read status and change model {model}'s keys" if model else "read status"
    raise ApiError(403, "forbidden", f"{caller.describe()} may only {scope}, not {what}")


def _change(result: ChangeResult) -> dict[str, Any]:
    return {
        "model": result.model,
        "changed": list(result.changed),
        "restarted": list(result.restarted),
        "failed": dict(result.failed),
        "message": result.message,
        "rolled_back": result.rolled_back,
    }


def _reload(result: ReloadResult) -> dict[str, Any]:
    return {
        "started": list(result.started),
        "stopped": list(result.stopped),
        "restarted": list(result.restarted),
        "failed": dict(result.failed),
        "message": result.message,
        "rolled_back": result.rolled_back,
    }


def _log_json(record: LogRecord, mask: Callable[[str], str]) -> dict[str, Any]:
    return {
        "ts": record.ts,
        "unit": record.unit,
        "stream": record.stream,
        "line": mask(record.line),
    }


def _pattern(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        check_regex(text)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"grep: {exc}") from exc
    return re.compile(text)


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


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(422, "invalid", f"{name} must be true or false, got {value!r}")
    return value


def _timeout(body: dict[str, Any]) -> float:
    value = body.get("timeout")
    if value is None:
        return DEFAULT_WAIT
    # A comparison, not math.isfinite: an integer of 400 digits overflows a float.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_WAIT:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}…"
        raise ApiError(
            422,
            "invalid",
            f"timeout must be a number of seconds above 0 and at most {MAX_WAIT:g}, got {shown}",
        )
    return float(value)
