"""Live config and per-unit control: the `ControlPlane` the front ends talk to. It holds
a `Supervisor` (composition, not a subclass) and turns each request into commands to
the units it concerns, waiting — with a deadline, answered as soon as the outcome is
known — for what the request promises.

Where a model's keys come from after each call (file < published < API):
- `set` changes the API layer (transactionally, see `changes`); `--unset` removes a key
  from the API and published layers, so a file value shows through again.
- `drop` stops the model's units and forgets its API and published keys; the model
  stays dropped across reloads until it is launched again.
- `launch` of a model the stack file defines starts it with the file's keys plus the
  given ones (a failed model is brought back the same way); of a new model, with the
  given keys only.
- `reload` re-reads the file's keys and keeps the API keys of running models.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from supervisor.config.spec import HttpView, validate_key, validate_key_name, validate_model
from supervisor.control.plane import (
    DEFAULT_WAIT,
    ChangeResult,
    DropResult,
    LaunchResult,
    LogRecord,
    Membership,
    ReloadResult,
    StackView,
    UnitHistory,
    UnitResult,
    UnitView,
)
from supervisor.errors import ControlError, InvalidValue
from supervisor.observe import ToolsEvent
from supervisor.plan import expand
from supervisor.runtime.changes import Change, Changes, wait_all
from supervisor.runtime.commands import Restart
from supervisor.runtime.record import UnitRecord
from supervisor.runtime.reload import Reloader
from supervisor.runtime.supervisor import Supervisor
from supervisor.secrets import Redactor
from supervisor.state import Event, ModelEvent, ModelState, ModelStatus, State, StopReason

STDERR_LINES = 5  # last stderr lines `why` shows


class LiveConfig:
    """The running stack as the control socket and the health port see it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sv = supervisor
        self.changes = Changes(supervisor)
        self.dropped: set[str] = set()
        # Models launched through the API that the file did not have: a reload keeps
        # them even after the file has had them for a while and no longer does.
        self.launched: set[str] = set()
        # One structural change (launch, drop, reload) at a time; each also holds the
        # queue lock of every model it touches, so it never runs beside a change batch.
        self.structure = anyio.Lock()
        self.reloader = Reloader(
            supervisor, self.changes, self.structure, self.dropped, self.launched
        )

    @property
    def redactor(self) -> Redactor:
        return self.sv.keys.redactor

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Restart what a unit's published keys change (a front end of the supervisor)."""
        with self.sv.published.subscribe() as published:
            task_status.started()
            async for model in published:
                if model in self.sv.domains:
                    self.changes.submit(model, Change(rollback=False))

    # ----------------------------------------------------------------- views

    def _view(self, record: UnitRecord) -> UnitView:
        child = record.child
        return UnitView(
            record.name,
            record.unit.process,
            record.model,
            record.status,
            self.sv.ports.ports.get(record.name),
            record.unit.spec.required,
            record.status_text,
            child.pid if child is not None and child.returncode is None else None,
            record.tools,
            tuple(h.snapshot() for h in record.probes.values()),
            record.live_failures if record.child is not None else 0,
        )

    def view(self) -> StackView:
        sv = self.sv
        return StackView(
            os.getpid(),
            str(sv.loaded.file),
            sv.socket_path,
            tuple(self._view(r) for r in sv.records.values()),
            sv.models,
            self.reloader.config_error,
            dataclasses.replace(
                sv.counters,
                reloads=self.reloader.count,
                last_reload_ok=self.reloader.last_ok,
                last_reload_at=self.reloader.last_ok_at,
            ),
        )

    def _record(self, name: str) -> UnitRecord:
        record = self.sv.records.get(name)
        if record is None:
            raise ControlError("not_found", f"unknown unit {name!r}")
        return record

    def unit_view(self, name: str) -> UnitView:
        return self._view(self._record(name))

    def _require_model(self, model: str) -> None:
        if model not in self.sv.domains:  # a dict lookup: status asks once per model
            running = ", ".join(self.sv.models) or "none"
            raise ControlError("not_found", f"unknown model {model!r}; running: {running}")

    def model_keys(self, model: str) -> dict[str, str]:
        self._require_model(model)
        return self.sv.keys.keys(model)

    def membership(self) -> Membership:
        sv = self.sv
        leaders = {r.child.pid: r for r in sv.records.values() if r.child is not None}
        helpers = frozenset({os.getpid(), *sv.launcher.helper_pids()})
        marker = f"SUPERVISE_ENV={sv.runtime_dir}/".encode()
        return Membership(_LeaderViews(leaders, self._view), helpers, marker)

    def recent_logs(self, unit: str | None, *, events: bool = True) -> list[LogRecord]:
        """Recent output (of one unit, or all), with the supervisor's own lines about it."""
        records = self.sv.records.values() if unit is None else [self._record(unit)]
        lines = [line for r in records for line in r.logs]
        if events:
            lines += [j for j in self.sv.journal if unit is None or j.about == unit]
        return sorted(lines, key=lambda line: line.ts)

    def history(self, name: str) -> UnitHistory:
        record = self._record(name)
        spec = record.unit.spec
        runner = self.sv.runners.get(name)
        started = max(
            (
                e.ts
                for e in record.history
                if isinstance(e, Event) and e.new.state is State.STARTING
            ),
            default=0.0,
        )  # the last instance's lines only
        stderr = [
            r.line
            for r in record.logs
            if r.stream == "stderr" and r.line.strip() and r.ts >= started
        ]
        return UnitHistory(
            self._view(record),
            tuple(record.history),
            tuple(stderr[-STDERR_LINES:]),
            record.unit.depends_on,
            spec.restart,
            spec.max_failures,
            spec.failure_window,
            runner.failures.count(anyio.current_time()) if runner is not None else 0,
            record.next_start,
            spec.ready.kind if spec.ready is not None else "",
            record.probe_error,
            spec.live.kind if spec.live is not None else "",
        )

    def subscribe_events(self) -> MemoryObjectReceiveStream[Event | ModelEvent | ToolsEvent]:
        return self.sv.events.subscribe()

    def subscribe_logs(self) -> MemoryObjectReceiveStream[LogRecord]:
        return self.sv.lines.subscribe()

    # ----------------------------------------------------------------- keys

    async def set_keys(
        self,
        model: str,
        keys: Mapping[str, str],
        unset: tuple[str, ...] = (),
        *,
        wait: bool = True,
        timeout: float = DEFAULT_WAIT,
        rollback: bool = True,
    ) -> ChangeResult:
        """Change a model's runtime config; with `wait`, return once every restarted unit
        is ready again, or the change was rolled back (or failed, without rollback)."""
        self._require_model(model)
        try:
            for key, value in keys.items():
                validate_key(key, value)
            for key in unset:  # a name only: an unset gives no value to check
                validate_key_name(key)
        except InvalidValue as exc:
            raise ControlError("invalid", str(exc)) from exc
        current = self.sv.keys.keys(model)
        layers = self.sv.keys.snapshot(model)
        removable = {*layers.api, *layers.published}  # the file's keys stay with the file
        no_op = all(current.get(k) == v for k, v in keys.items()) and not set(unset) & removable
        if no_op and self.changes.idle(model):
            absent = [key for key in unset if key not in current]
            kept = [key for key in unset if key in current]
            reasons = []
            if absent:
                reasons.append(f"model {model} has no key {', '.join(absent)}")
            if kept:
                reasons.append(
                    f"{', '.join(kept)} {'is' if len(kept) == 1 else 'are'} the stack file's "
                    f"([models.{model}] in {self.sv.loaded.file}); --unset removes only what "
                    "`set` or a publish gave"
                )
            message = "nothing changed" + (": " + "; ".join(reasons) if reasons else "")
            return ChangeResult(model, message=message)
        change = Change(dict(keys), tuple(unset), rollback, timeout)
        self.changes.submit(model, change)
        with anyio.move_on_after(timeout):
            await change.applied.wait()
        if not change.applied.is_set() and self.changes.withdraw(model, change):
            why = (
                f"not applied within {timeout:g} s: another operation on model {model} "
                "(a restart, start or reload of it) held it all that time; nothing changed"
            )
            return ChangeResult(model, failed={f"model {model}": why})
        await change.applied.wait()  # a batch took it: its units are stopping now
        if not wait:
            return change.result or ChangeResult(model, change.changed, change.restarted)
        with anyio.move_on_after(timeout):
            await change.done.wait()
        if change.rolling_back.is_set():  # judged within the same window: say how it ended
            grace = max((r.unit.spec.stop_timeout for r in self.sv.of_model(model)), default=0)
            with anyio.move_on_after(timeout + grace):
                await change.done.wait()
        if change.result is not None:
            return change.result
        failed = {}
        for name in change.restarted:
            status = self.sv.status_of(name)
            if status is None or not status.ok:
                now = status.describe() if status is not None else "gone"
                failed[name] = f"not ready within {timeout:g} s (now {now})"
        if change.rolling_back.is_set():
            going_on = "rolling back to the previous keys: still under way (see `supervise status`)"
        else:
            going_on = "the change goes on: it is rolled back if a unit fails" if rollback else ""
        return ChangeResult(model, change.changed, change.restarted, failed, going_on)

    # ----------------------------------------------------------------- models

    async def launch(
        self, model: str, keys: Mapping[str, str], *, timeout: float = DEFAULT_WAIT
    ) -> LaunchResult:
        try:
            validate_model(model, keys)
        except InvalidValue as exc:
            raise ControlError("invalid", str(exc)) from exc
        sv = self.sv
        async with self.structure, self.changes.queue(model).lock:
            status = sv.domains.get(model)
            if status is not None and status.state is not ModelState.FAILED:
                raise ControlError("conflict", f"model {model!r} is already running")
            if status is None:
                self._refuse_taken_ports(model)
            sv.keys.change(model, keys)
            if status is not None:  # a failed model: brought back with the new keys
                sv.set_model(model, ModelState.RUNNING)
                records = _to_start(sv.of_model(model))
            else:
                self.dropped.discard(model)
                if model not in sv.keys.file:
                    self.launched.add(model)
                sv.domains[model] = ModelStatus()
                units = expand(sv.loaded.stack.processes, [model])
                records = sv.add_units([u for u in units.values() if u.model == model], start=False)
                sv.reorder(expand(sv.loaded.stack.processes, sv.models))
            waiters = sv.start_units(records)
        sv.note(f"launched model {model}: {', '.join(r.name for r in records)}")
        failed = await wait_all(sv, waiters, timeout)
        return LaunchResult(model, tuple(self._view(r) for r in records), failed)

    def _refuse_taken_ports(self, model: str) -> None:
        """A model launched at run time may not take a fixed port another unit has."""
        sv = self.sv
        owners = {port: name for name, port in sv.ports.ports.items()}
        for unit in expand(sv.loaded.stack.processes, [model]).values():
            port = unit.spec.port
            if unit.model == model and isinstance(port, int) and port in owners:
                raise ControlError(
                    "conflict",
                    f"model {model!r} cannot be launched: {unit.name} would listen on port "
                    f"{port}, which {owners[port]} has; a process run for several models "
                    f'needs port = "auto" (processes.{unit.process}.port in {sv.loaded.file})',
                )

    async def drop(self, model: str) -> DropResult:
        sv = self.sv
        async with self.structure, self.changes.queue(model).lock:
            self._require_model(model)
            members = sv.of_model(model)
            await sv.retire(members)
            del sv.domains[model]
            sv.keys.forget(model)
            self.dropped.add(model)
            self.launched.discard(model)
        sv.note(f"dropped model {model}")
        return DropResult(model, tuple(r.name for r in members))

    # ----------------------------------------------------------------- units

    def _target(self, name: str) -> tuple[str | None, list[UnitRecord]]:
        """A unit name, or a model name (all its units)."""
        if name in self.sv.records:
            record = self.sv.records[name]
            return None, [record]
        if name in self.sv.models:
            return name, self.sv.of_model(name)
        what = "unit" if "/" in name else "unit or model"
        raise ControlError("not_found", f"unknown {what} {name!r}")

    async def start(self, name: str, *, timeout: float = DEFAULT_WAIT) -> UnitResult:
        model, records = self._target(name)
        owner = model or records[0].model
        if owner is not None and self.sv.domains[owner].state is ModelState.FAILED:
            model, records = owner, self.sv.of_model(owner)
        if model is not None:
            return await self._start_model(model, timeout)
        waiters = self.sv.start_units(records)
        failed = await wait_all(self.sv, waiters, timeout)
        return self._unit_result(name, waiters[0].verdict, failed, "started")

    async def _start_model(self, model: str, timeout: float) -> UnitResult:
        sv = self.sv
        async with self.changes.queue(model).lock:
            if sv.domains[model].state is ModelState.FAILED:
                sv.set_model(model, ModelState.RUNNING)
            records = _to_start(sv.of_model(model))
            waiters = sv.start_units(records)
            failed = await wait_all(sv, waiters, timeout)
            sv.check_domain(model)
        names = ", ".join(r.name for r in records) or "nothing to start"
        message = f"model {model}: started {names}" if not failed else f"model {model}: failed"
        return UnitResult(model, message, failed, tuple(self._view(r) for r in records))

    async def stop(self, name: str) -> UnitResult:
        model, records = self._target(name)
        if model is None and records[0].status.stop is StopReason.USER:
            return UnitResult(name, f"{name} is already stopped")
        await self.sv.stop_units(records, StopReason.USER, "stopped by a user")
        return UnitResult(name, f"{name} stopped", units=tuple(self._view(r) for r in records))

    async def restart(self, name: str, *, timeout: float = DEFAULT_WAIT) -> UnitResult:
        model, records = self._target(name)
        owner = model or records[0].model
        if owner is not None and self.sv.domains[owner].state is ModelState.FAILED:
            return await self._start_model(owner, timeout)
        if model is not None:
            async with self.changes.queue(model).lock:
                await self.sv.stop_units(records, StopReason.CHANGE, "restarting")
                waiters = self.sv.start_units(records)
                failed = await wait_all(self.sv, waiters, timeout)
            return UnitResult(model, f"model {model} restarted" if not failed else "", failed)
        waiters = self.sv.send(records, Restart)
        failed = await wait_all(self.sv, waiters, timeout)
        return self._unit_result(name, waiters[0].verdict, failed, "restarted")

    def _unit_result(
        self, name: str, verdict: object, failed: dict[str, str], verb: str
    ) -> UnitResult:
        view = self.unit_view(name) if name in self.sv.records else None
        units = (view,) if view is not None else ()
        if failed:
            return UnitResult(name, f"{name} {failed[name]}", failed, units)
        reason = getattr(verdict, "reason", "")
        status = view.status.describe() if view is not None else "gone"
        return UnitResult(name, reason or f"{name} {verb}: {status}", units=units)

    async def reload(self, *, timeout: float = DEFAULT_WAIT, by: str = "") -> ReloadResult:
        return await self.reloader.reload(timeout, by)

    def http_views(self) -> list[HttpView]:
        return self.sv.loaded.stack.supervise.http_serve

    def shutdown_reason(self) -> str:
        return self.sv.ending_reason  # "" until `end` says why

    async def until_shutdown(self) -> None:
        await self.sv.until_ending()


def _to_start(records: list[UnitRecord]) -> list[UnitRecord]:
    """What starting a model starts: its stopped and failed units (completed oneshots
    stay done)."""
    return [r for r in records if r.status.state in (State.STOPPED, State.FAILED)]


class _LeaderViews(Mapping[int, UnitView]):
    """Unit leaders by pid, each one's view built only when a caller turns out to be
    that unit's (a request looks up a handful of pids, not every unit)."""

    def __init__(self, records: dict[int, UnitRecord], view: Callable[[UnitRecord], UnitView]):
        self._records = records
        self._view = view

    def __getitem__(self, pid: int) -> UnitView:
        return self._view(self._records[pid])

    def __contains__(self, pid: object) -> bool:
        return pid in self._records

    def __iter__(self) -> Iterator[int]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
