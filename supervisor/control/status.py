"""The status document (`supervise status`, `/v1/status`, the health port's `/status`)
and readiness (`/readyz`), built from a `StackView`. Secrets are masked here, once."""

from __future__ import annotations

from typing import Any

import anyio

from supervisor.control.plane import ControlPlane, StackView, UnitView
from supervisor.osproc.usage import TreeUsage, process_table
from supervisor.secrets import Redactor, redact
from supervisor.state import LIVE, ModelState, State


def unit_document(
    view: UnitView, redactor: Redactor, usage: TreeUsage | None = None
) -> dict[str, Any]:
    status = view.status
    running = status.state is State.RUNNING and status.since is not None
    document: dict[str, Any] = {
        "unit": view.name,
        "process": view.process,
        "model": view.model,
        "state": str(status.state),
        "ready": status.ready,
        "pid": status.pid if status.state in LIVE else None,
        "port": view.port,
        "restarts": status.restarts,
        "exit_code": status.exit_code,
        "reason": redactor.mask(status.reason or view.note),
        "stop": str(status.stop) if status.stop is not None else None,
        "uptime": anyio.current_time() - status.since if running and status.since else None,
        "required": view.required,
        "cpu": None,
        "rss": None,
        "tools": view.tools.count if view.tools is not None else None,
        "tools_hash": view.tools.digest if view.tools is not None else None,
        "live_failures": view.live_failures,
    }
    if usage is not None and view.leader is not None:
        document["cpu"], document["rss"] = usage.of(view.leader)
    return document


def status_document(plane: ControlPlane, *, full: bool, usage: bool = True) -> dict[str, Any]:
    """The whole stack; `full` (an operator) adds each model's keys, redacted."""
    view = plane.view()
    redactor = plane.redactor
    trees = TreeUsage(process_table()) if usage else None
    models: dict[str, Any] = {}
    for name, status in view.models.items():
        models[name] = {"state": str(status.state), "reason": redactor.mask(status.reason)}
        if full:
            keys = plane.model_keys(name)
            models[name]["keys"] = {k: redact(k, v) for k, v in sorted(keys.items())}
    return {
        "supervisor": {"pid": view.pid, "stack": view.stack_file, "socket": view.socket},
        "units": [unit_document(u, redactor, trees) for u in view.units],
        "models": models,
        "config_error": redactor.mask(view.config_error) or None,
    }


def readiness(view: StackView, redactor: Redactor) -> tuple[bool, dict[str, Any]]:
    """Whether the stack is ready, and the body that says why (or why not), its reasons
    masked (the health port may face the internet).

    Ready when every required global unit is ready (or completed) and every model that
    is not failed is ready: a failed model never makes the healthy ones unready (it is
    listed with its reason), but a stack with models of which none is ready is not."""
    unready: dict[str, str] = {}
    failed: dict[str, str] = {}
    ready_models = 0
    by_model: dict[str | None, list[UnitView]] = {}
    for unit in view.units:
        by_model.setdefault(unit.model, []).append(unit)
    for unit in by_model.get(None, []):
        if unit.required and not unit.status.ok:
            unready[unit.name] = redactor.mask(unit.status.describe())
    for model, status in view.models.items():
        if status.state in (ModelState.FAILED, ModelState.STOPPING):
            failed[model] = redactor.mask(status.describe())
            continue
        waiting = {
            u.name: redactor.mask(u.status.describe())
            for u in by_model.get(model, [])
            if u.required and not u.status.ok
        }
        unready.update(waiting)
        ready_models += not waiting
    if view.models and not ready_models:
        unready.setdefault("models", "no model is ready")
    body: dict[str, Any] = {"status": "unready" if unready else "ready"}
    if unready:
        body["units"] = unready
    if failed:
        body["failed_models"] = failed
    return not unready, body
