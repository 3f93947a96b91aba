"""The supervisor core: the task group, the registry of units (one task each), the
failure domains, and the stack's end.

Invariants:
- Construction takes values and does no I/O; `run` makes the runtime directory, starts
  the guard, the front ends and one task per unit, and removes everything it made.
- A unit's status is written only by its own task; the supervisor learns of every change
  through `transitioned`, which publishes the event and wakes exactly the units that may
  now decide differently (its dependents; its model's units when it publishes keys).
- Models are failure domains: a required per-model unit that ends failed fails its model
  — the model's units stop in reverse dependency order, every other model and the global
  units keep running. A required global unit that fails ends the stack with exit 1 (as
  does any required failure with `on_model_failure = "stop-stack"`). While a change is
  applied to a model (`CHANGING`) a failure belongs to the change, which rolls back.
- Shutdown stops units in reverse dependency order within `shutdown_timeout`, then kills
  what is left; the guard covers the case where this process is killed.
- What is observed of a unit besides its state (its MCP tools, failed liveness attempts)
  is published and printed like its events, and kept in its history for `why`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from supervisor.config.handoff import read_published
from supervisor.config.load import EVERYTHING, LoadedStack, Selection, settings_value
from supervisor.control.plane import Counters, LogRecord
from supervisor.errors import ConfigError, MissingModelKey, Problem
from supervisor.observe import Note, ToolList, ToolsEvent
from supervisor.osproc.guard import Guard, make_runtime_dir, remove_runtime_dir
from supervisor.osproc.launch import Launcher
from supervisor.osproc.listening import ListenWatch
from supervisor.osproc.sockets import PortBook
from supervisor.osproc.spawn import Child, Reaper, become_subreaper
from supervisor.osproc.tree import record_members, signal_first
from supervisor.output.format import SUPERVISOR_NAME
from supervisor.output.logfiles import LogFiles, log_routes
from supervisor.output.printer import Printer
from supervisor.plan import RenderContext, Rendering, Unit, expand, levels, render
from supervisor.policy import failure_action
from supervisor.runtime import gate
from supervisor.runtime.commands import Command, Retire, Start, Stop, Waiter, Watch
from supervisor.runtime.events import EVENT_BACKLOG, LOG_BACKLOG, Broadcaster
from supervisor.runtime.gate import Verdict
from supervisor.runtime.keys import ModelKeys
from supervisor.runtime.record import UnitRecord, slotted
from supervisor.runtime.unit import UnitRunner
from supervisor.socket_registry import registry_entry
from supervisor.state import (
    Blocker,
    Event,
    ModelEvent,
    ModelState,
    ModelStatus,
    Phase,
    State,
    Status,
    StopReason,
    advance_model,
)

STREAM_PATIENCE = 1.0  # seconds a follower is given to read the last lines at the end
EXIT_OK = 0
EXIT_UNIT_FAILED = 1
EXIT_FORCED = 130
FORCED_STOP_TIMEOUT = 5.0  # after the shutdown budget: killing what is left, bounded

FrontEnd = Callable[..., Coroutine[Any, Any, None]]  # started with `task_status`


class Supervisor:
    """Runs one stack until it ends, is stopped, or a required global unit fails."""

    def __init__(
        self,
        loaded: LoadedStack,
        printer: Printer,
        *,
        selection: Selection = EVERYTHING,
        exit_on_end: bool = False,
    ) -> None:
        self.loaded = loaded
        self.printer = printer
        self.selection = selection
        self.only_models = list(selection.models)
        self.exit_on_end = exit_on_end  # any unit that ends ends the stack (honcho's way)
        self.redactor = printer.redactor  # one for the output, the API and the key store
        self.keys = ModelKeys(self.file_models(loaded), base_pairs(loaded), self.redactor)
        # Failure domains: each model, and the global units (None).
        self.domains: dict[str | None, ModelStatus] = {None: ModelStatus()}
        self.domains.update((m, ModelStatus()) for m in self.keys.file)
        self.records: dict[str, UnitRecord] = {}
        self.runners: dict[str, UnitRunner] = {}
        self.ports = PortBook(str(loaded.file))
        self.phase = Phase.RUNNING
        self.exit_code = EXIT_OK
        self.ending_reason = ""  # why the stack stops, once it does (see `end`)
        self.socket_path = str(loaded.resolve_path(settings_value(loaded, "control_socket") or ""))
        self.registry_link = registry_entry(loaded.file)
        self.events = Broadcaster[Event | ModelEvent | ToolsEvent](EVENT_BACKLOG)
        self.lines = Broadcaster[LogRecord](LOG_BACKLOG)
        self.published = Broadcaster[str](EVENT_BACKLOG)  # models whose units published keys
        log_lines = loaded.stack.supervise.log_lines
        self.journal: deque[LogRecord] = deque(maxlen=log_lines)  # the supervisor's own lines
        self.reaper = Reaper()
        self.listening = ListenWatch()
        self.runtime_dir = Path()
        self.guard = Guard(self.runtime_dir)
        self.launcher = Launcher(self.reaper, self.guard)
        self._dependents: dict[str, list[UnitRecord]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._end: anyio.Event | None = None
        self.forced: anyio.Event = anyio.Event()
        self.counters = Counters(started=time.time())
        self._changing_since: dict[str, float] = {}  # models in CHANGING: since when
        self.logfiles = LogFiles(printer.redactor, printer.fmt, printer.note)
        printer.tee = self.logfiles

    @property
    def models(self) -> dict[str, ModelStatus]:
        """The models in the stack (in order) and their states."""
        return {m: s for m, s in self.domains.items() if m is not None}

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        assert self._tg is not None, "the supervisor is not running"
        self._tg.start_soon(func, *args)

    def file_models(self, loaded: LoadedStack) -> dict[str, dict[str, str]]:
        only = self.only_models
        return {n: dict(k) for n, k in loaded.stack.models.items() if not only or n in only}

    async def run(self, front_ends: Sequence[FrontEnd] = ()) -> int:
        """Run until the stack ends; returns the exit code for `supervise run`."""
        base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
        try:
            self.runtime_dir = make_runtime_dir(base)
        except OSError as exc:
            reason = f"cannot make the runtime directory in {base}: {exc.strerror}"
            raise ConfigError([Problem("XDG_RUNTIME_DIR", "", reason)]) from exc
        link = (self.registry_link, self.socket_path) if self.registry_link else None
        self.guard = self.launcher.guard = Guard(self.runtime_dir, link)
        self._end, self.forced = anyio.Event(), anyio.Event()
        become_subreaper()
        self.guard.start(os.environ)
        try:
            # The reaper lives in an outer group, so that it still collects exits while
            # units are being stopped, even when the inner group is torn down by an error.
            async with anyio.create_task_group() as outer:
                outer.start_soon(self.reaper.run)
                outer.start_soon(self.listening.run)
                try:
                    async with anyio.create_task_group() as tg:
                        self._tg = tg
                        self.launcher.bind(tg)
                        for front_end in front_ends:
                            await tg.start(front_end)
                        self.add_units(expand(self.loaded.stack.processes, self.models).values())
                        self._check_end()
                        await self._end.wait()
                        await self._shutdown()
                        # Followers (`logs -f`, the events stream) get the last lines,
                        # then the end of their stream, before the control plane goes.
                        async with anyio.create_task_group() as closing:
                            closing.start_soon(self.lines.close, STREAM_PATIENCE)
                            closing.start_soon(self.events.close, STREAM_PATIENCE)
                        tg.cancel_scope.cancel()
                finally:
                    outer.cancel_scope.cancel()
        finally:
            self.ports.close()
            self.guard.stop()
            remove_runtime_dir(self.runtime_dir)
            self.printer.close()
        return self.exit_code

    def end(self, code: int, why: str) -> None:
        """Stop the stack (gracefully) and make `run` return `code`; `why` is what a
        request cut short by the shutdown is told."""
        assert self._end is not None
        if not self._end.is_set():
            self.exit_code, self.ending_reason = code, why
            self._end.set()

    @property
    def ending(self) -> bool:
        return self._end is not None and self._end.is_set()

    async def until_ending(self) -> None:
        """Return once the stack has begun to stop."""
        assert self._end is not None, "the supervisor is not running"
        await self._end.wait()

    def force(self, *, interrupted: bool = True) -> None:
        """Kill every unit's tree at once: a second Ctrl-C (`run` exits 130), or the
        shutdown budget spent (`interrupted` False: the exit code stays the shutdown's,
        0 after one SIGTERM or Ctrl-C)."""
        self.phase = Phase.FORCED
        if interrupted:
            self.exit_code = EXIT_FORCED
        self.forced.set()
        self.end(EXIT_FORCED, "every unit was killed")

    async def _shutdown(self) -> None:
        if self.phase is Phase.RUNNING:
            self.phase = Phase.STOPPING
        budget = self.loaded.stack.supervise.shutdown_timeout
        with anyio.move_on_after(budget) as scope:
            await self.stop_units(list(self.records.values()), StopReason.SHUTDOWN)
            await self.launcher.stop_zygotes()
        if scope.cancelled_caught:
            self.note(f"shutdown took longer than {budget:g} s: killing what is left")
            self.force(interrupted=False)
            with anyio.move_on_after(FORCED_STOP_TIMEOUT):
                await self.stop_units(list(self.records.values()), StopReason.SHUTDOWN)
                await self.launcher.stop_zygotes()

    def _check_end(self) -> None:
        """End the run when nothing is left running or able to run."""
        if self.ending or self.phase is not Phase.RUNNING or not self.records:
            return
        if all(gate.finished(r.status) for r in self.records.values()):
            self.note("every unit has finished")
            self.end(EXIT_OK, "every unit has finished")

    def add_units(self, units: Iterable[Unit], *, start: bool = True) -> list[UnitRecord]:
        """Register units (their ports assigned) and start their tasks."""
        assert self._tg is not None, "add_units needs a running supervisor"
        added = []
        for unit in units:
            if unit.name in self.records:
                continue
            record = self._record(unit)
            self.records[unit.name] = record
            self.runners[unit.name] = UnitRunner(record, self)
            added.append(record)
        self._reindex()
        for record in added:
            self._tg.start_soon(partial(self.runners[record.name].run, autostart=start))
        return added

    def _record(self, unit: Unit) -> UnitRecord:
        # Global units and models live in separate trees, so no model name can collide
        # with a global process's file.
        home = self.runtime_dir / "global"
        if unit.model is not None:
            (self.runtime_dir / "models").mkdir(mode=0o700, exist_ok=True)
            home = self.runtime_dir / "models" / unit.model
        home.mkdir(mode=0o700, exist_ok=True)
        record = UnitRecord(unit, env_file=home / f"{unit.process}.env")
        record.logs = deque(maxlen=self.loaded.stack.supervise.log_lines)
        self.refresh(record, unit)
        return record

    def refresh(self, record: UnitRecord, unit: Unit) -> None:
        """Adopt a (re)loaded plan value; what was derived from the old one follows."""
        old = record.unit.spec if record.unit is not unit else None
        record.unit = unit
        spec = unit.spec
        if old is None or (spec.port, spec.socket) != (old.port, old.socket):
            self.ports.assign(unit.name, spec.port, spec.socket)
        record.notify_path = None
        notify_live = spec.live is not None and spec.live.notify  # WATCHDOG=1 heartbeats
        if (spec.ready is not None and spec.ready.notify) or notify_live:
            notify_dir = self.runtime_dir / "notify"
            notify_dir.mkdir(mode=0o700, exist_ok=True)
            name = f"{unit.name.replace('/', '@')}.sock"
            record.notify_path = slotted(notify_dir / name, record.slot)

    async def retire(self, records: Iterable[UnitRecord]) -> None:
        """Stop units for good (dependents first) and forget them."""
        chosen = list(records)
        await self.stop_units(chosen, StopReason.REMOVED, "removed from the stack")
        for record in chosen:
            done = anyio.Event()
            self.runners[record.name].send(Retire(done))
            await done.wait()
            self.records.pop(record.name, None)
            self.runners.pop(record.name, None)
            self.ports.release(record.name)
        self._reindex()

    def reorder(self, processes_order: Iterable[str]) -> None:
        """Keep `records` in dependency order after units were added or removed."""
        self.records = {n: self.records[n] for n in processes_order if n in self.records}
        self._reindex()

    def _reindex(self) -> None:
        dependents: dict[str, list[UnitRecord]] = {}
        for record in self.records.values():
            for dep, _ in record.unit.depends_on:
                dependents.setdefault(dep, []).append(record)
        self._dependents = dependents
        self.printer.set_units(self.records)
        self.logfiles.configure(log_routes(self.loaded, [r.unit for r in self.records.values()]))

    def of_model(self, model: str | None) -> list[UnitRecord]:
        return [r for r in self.records.values() if r.model == model]

    def send(
        self, records: Iterable[UnitRecord], make: Callable[[Waiter], Command]
    ) -> list[Waiter]:
        waiters = []
        for record in records:
            waiter = Waiter(record.name)
            runner = self.runners.get(record.name)
            if runner is None:
                waiter.resolve(Verdict(False, f"{record.name} was removed from the stack"))
            else:
                runner.send(make(waiter))
            waiters.append(waiter)
        return waiters

    def start_units(self, records: Iterable[UnitRecord]) -> list[Waiter]:
        return self.send(records, Start)

    def watch_units(self, records: Iterable[UnitRecord]) -> list[Waiter]:
        return self.send(records, Watch)

    async def stop_units(
        self, records: Iterable[UnitRecord], reason: StopReason, text: str = ""
    ) -> None:
        """Stop units, dependents before their dependencies; return once all are down."""
        depth = levels({n: r.unit for n, r in self.records.items()})
        depth.update((r.name, 0) for r in records if r.name not in depth)
        chosen = {r.name: self.runners[r.name] for r in records if r.name in self.runners}
        for level in sorted({depth[n] for n in chosen}, reverse=True):
            at_level = [name for name in chosen if depth[name] == level]
            _signal_first([self.records[name] for name in at_level if name in self.records])
            done = []
            for name in at_level:
                done.append(anyio.Event())
                chosen[name].send(Stop(reason, text, done[-1]))
            for event in done:
                await event.wait()

    def set_model(self, domain: str | None, state: ModelState, reason: str = "") -> None:
        """Move a failure domain (a model, or the global units: None) to `state`."""
        old = self.domains[domain]
        new = advance_model(str(domain), old, state, reason)
        self.domains[domain] = new
        if domain is None:
            return
        self._time_change(domain, old.state, new.state)
        event = ModelEvent(time.time(), domain, old, new)
        if ModelState.CHANGING not in (old.state, new.state) or state is ModelState.STOPPING:
            self.printer.event(event)
            self._journal(f"model {domain} {new.describe()}", None)
        self.events.publish(event)

    def _time_change(self, model: str, old: ModelState, new: ModelState) -> None:
        """How long the model's last change (a `set`, a reload) took, for /metrics."""
        now = anyio.current_time()
        if new is ModelState.CHANGING:
            self._changing_since[model] = now
        elif old is ModelState.CHANGING and model in self._changing_since:
            took = now - self._changing_since.pop(model)
            counters = self.counters
            self.counters = dataclasses.replace(
                counters,
                changes={**counters.changes, model: counters.changes.get(model, 0) + 1},
                last_change_seconds={**counters.last_change_seconds, model: took},
            )

    def fail_model(self, model: str, reason: str) -> None:
        """The model's units stop (reverse dependency order); the model is failed. Not
        while the stack stops: its units are being stopped already, and nothing failed."""
        if self.phase is not Phase.RUNNING:
            return
        self.set_model(model, ModelState.STOPPING, reason)
        self.note(f"model {model} failed: stopping its units; other models keep running")
        self.start_soon(self._stop_failed_model, model, reason)

    async def _stop_failed_model(self, model: str, reason: str) -> None:
        await self.stop_units(self.of_model(model), StopReason.MODEL, f"model {model} failed")
        if self.domains.get(model, ModelStatus()).state is ModelState.STOPPING:
            self.set_model(model, ModelState.FAILED, reason)

    def check_domain(self, domain: str | None) -> None:
        """After a change: a required unit that is failed now fails its domain."""
        for record in self.of_model(domain):
            if record.status.state is State.FAILED:
                self._unit_failed(record)

    def _unit_failed(self, record: UnitRecord) -> None:
        domain = self.domains.get(record.model)
        action = failure_action(
            required=record.unit.spec.required,
            stack_running=self.phase is Phase.RUNNING,
            domain=domain.state if domain is not None else None,
            global_unit=record.model is None,
            policy=self.loaded.stack.supervise.on_model_failure,
        )
        if action == "stop-stack":
            self.note(f"{record.name} is required and failed: stopping the stack")
            # A Procfile's run exits with the failed process's own code, as honcho's does.
            code = _exit_code_of(record.status) if self.loaded.is_procfile else EXIT_UNIT_FAILED
            self.end(code, f"{record.name} is required and failed")
        elif action == "stop-model" and record.model is not None:
            self.fail_model(record.model, f"{record.name} failed: {record.status.reason}")

    def status_of(self, name: str) -> Status | None:
        record = self.records.get(name)
        return record.status if record is not None else None

    def render(self, record: UnitRecord) -> Rendering:
        """Raises MissingModelKey or UnresolvedReference, as `render` does."""
        model = record.model
        variables = record.variables(self.socket_path)
        context = RenderContext.of(
            self.loaded,
            model_keys={model: self.keys.keys(model)} if model is not None else {},
            ports=self.ports.ports,
            unit_variables={record.name: variables},
        )
        rendering = render(record.unit, context)
        # A process's own `env` (or a value given to a secret-looking name) is masked too.
        self.redactor.rendered(record.name, rendering.env)
        return rendering

    def key_blocker(self, record: UnitRecord, missing: MissingModelKey) -> Blocker:
        publishers = [
            r.status for r in self.of_model(record.model) if missing.key in r.unit.spec.publishes
        ]
        return gate.key_blocker(missing.model, missing.key, publishers)

    def transitioned(self, record: UnitRecord, event: Event) -> None:
        old, new = event.old, event.new
        if not (old.state is new.state is State.PENDING and old.reason == new.reason):
            self.printer.event(event)
            self._journal(f"{record.name} {new.describe()}", record.name)
            record.history.append(event)
        self.events.publish(event)
        for dependent in self._dependents.get(record.name, ()):
            dependent.poke()
        if record.unit.spec.publishes and record.model is not None:
            for sibling in self.of_model(record.model):
                sibling.poke()
        if new.state is State.FAILED and old.state is not State.FAILED:
            self._unit_failed(record)
        if self.exit_on_end and new.state in (State.EXITED, State.FAILED):
            self.note(f"{record.name} ended: stopping the stack (--exit-on-end)")
            self.end(_exit_code_of(new), f"{record.name} ended (--exit-on-end)")
        self._check_end()

    def emit(self, line: LogRecord) -> None:
        self.printer.line(line.unit, line.stream, line.line, line.ts)
        if self.lines.listening:
            self.lines.publish(line)

    def note(self, text: str, about: str | None = None) -> None:
        """A line of the supervisor's own: printed, kept for `logs`, streamed."""
        self.printer.note(text)
        self._journal(text, about)

    def _journal(self, text: str, about: str | None) -> None:
        line = LogRecord(time.time(), SUPERVISOR_NAME, "event", self.redactor.mask(text), about)
        self.journal.append(line)
        if self.lines.listening:
            self.lines.publish(line)

    def tools_seen(self, record: UnitRecord, tools: ToolList) -> None:
        """A unit's mcp probe listed `tools`: an event when they are new or changed."""
        old = record.tools
        if old == tools:
            return
        record.tools = tools
        event = ToolsEvent(time.time(), record.name, old, tools)
        record.history.append(event)
        self.printer.event(event)
        self.events.publish(event)

    def observed(self, record: UnitRecord, text: str) -> None:
        """Something seen of a unit that is no state change: printed, and kept for `why`."""
        record.history.append(Note(time.time(), record.name, text))
        self.note(f"{record.name} {text}", record.name)

    def take_published(self, record: UnitRecord) -> None:
        """Raises PublishError for a hand-off file that cannot be taken."""
        published = read_published(record.name, record.env_file)
        if not published:
            return
        if record.model is None:
            self.note(
                f"{record.name} published {sorted(published)}, but a global unit has no model: "
                "ignored"
            )
            return
        changed = self.keys.publish(record.model, published)
        if changed:
            self.note(f"{record.name} published {', '.join(changed)}")
            for sibling in self.of_model(record.model):
                sibling.poke()
            self.published.publish(record.model)

    async def launch(self, record: UnitRecord, rendering: Rendering) -> Child:
        return await self.launcher.start(
            rendering.argv,
            rendering.environ,
            rendering.cwd,
            preload=record.unit.spec.preload,
            held=self.ports.held(record.name),
            base_env={**self.loaded.env_files, **self.loaded.environ},
        )

    def released(self, child: Child) -> None:
        self.guard.forget(child.pid)

    def socket_bound(self) -> None:
        """The control socket is ours: the guard removes it if this process dies."""
        self.guard.socket_bound()


def _signal_first(records: list[UnitRecord]) -> None:
    """Send every running unit of a level its stop signal at once, before each unit's
    task gets to its own (graceful, bounded) stop: N units stop in the time of one. The
    units' trees are recorded first, so that descendants reparented when a leader dies
    are still known to be theirs. A unit already stopping (a `stop`, a `drop`, a
    change's restart in flight) had its signal: a second one (SIGINT to uvicorn) would
    mean "quit now"."""
    live = [
        r
        for r in records
        if r.child is not None
        and r.child.returncode is None
        and r.status.state is not State.STOPPING
    ]
    if not live:
        return
    record_members((r.child.pid, r.marker) for r in live if r.child is not None)
    for record in live:
        assert record.child is not None
        signal_first(record.child.pid, signal.Signals[record.unit.spec.stop_signal])


def _exit_code_of(status: Status) -> int:
    """What `run` exits with for a unit that ended: its exit code, or 1 for a failure
    without one (a signal, a spawn error); a signal's number as a shell reports it."""
    code = status.exit_code
    if code is None:
        return EXIT_OK if status.state is State.EXITED else EXIT_UNIT_FAILED
    if code < 0:
        return 128 - code
    if status.state is State.FAILED and code == 0:
        return EXIT_UNIT_FAILED
    return code


def base_pairs(loaded: LoadedStack) -> list[tuple[str, str]]:
    """Variables whose secret-looking values must be masked besides the models' keys."""
    return [*loaded.variables.items(), *loaded.stack.env.items()]
