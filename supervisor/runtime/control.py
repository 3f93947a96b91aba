"""Live config and per-unit control on top of the core supervisor.

Invariants:
- A change of runtime config (API, publish, reload, SIGHUP, a watched file) re-renders
  every unit; exactly the units whose rendering changed restart — stopped dependents
  first, then started in dependency order, each gated as at its first start.
- Changes inside the coalesce window make one batch: each affected unit restarts once.
- A bad new stack file changes nothing: it is parsed, validated and planned in full
  before anything is touched.
- A unit stopped by a user stays stopped across changes until started again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from supervisor.config.load import LoadedStack, load_stack
from supervisor.errors import ConfigError, InvalidValue, MissingModelKey, UnresolvedReference
from supervisor.plan import expand, validate_key, validate_model
from supervisor.review import review_stack
from supervisor.runtime.supervisor import Supervisor
from supervisor.runtime.unit import UnitRuntime
from supervisor.state import State

# The file watcher's thread wakes every WATCH_STEP_MS to look for changes and for its stop
# event (what an edit waits before it is seen, and what a shutdown waits for the thread);
# it hands control back to the event loop every WATCH_TIMEOUT_MS. Both bound idle CPU.
WATCH_STEP_MS = 200
WATCH_TIMEOUT_MS = 30_000


class ControlError(Exception):
    """A control request that cannot be done; `code` maps to an HTTP status."""

    STATUS: ClassVar[dict[str, int]] = {
        "bad_request": 400,
        "forbidden": 403,
        "not_found": 404,
        "conflict": 409,
        "invalid": 422,
        "invalid_config": 422,
    }

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)

    @property
    def status(self) -> int:
        return self.STATUS.get(self.code, 400)


@dataclass
class Batch:
    """Changes coalesced into one restart; callers wait on `done`."""

    done: anyio.Event = field(default_factory=anyio.Event)
    restarted: list[str] = field(default_factory=list)
    generations: dict[str, int] = field(default_factory=dict)
    applied: anyio.Event = field(default_factory=anyio.Event)
    # Models whose keys changed (only their units can render differently); None: every
    # unit (a reload, an env file).
    models: set[str] | None = field(default_factory=set)


class LiveSupervisor(Supervisor):
    def __init__(
        self, loaded: LoadedStack, printer: Any, *, only_models: Iterable[str] = ()
    ) -> None:
        self.only_models = list(only_models)
        self.dropped: set[str] = set()
        self.config_error: str = ""
        self._batch: Batch | None = None
        self._batch_wake = anyio.Event()
        self._apply_lock = anyio.Lock()
        self._watch_stop = threading.Event()
        self._restarting: dict[str, int] = {}  # unit → generation a running restart replaces
        super().__init__(loaded, printer, only_models=self.only_models)

    # ----------------------------------------------------------------- batching

    async def _start_front_ends(self, tg: anyio.abc.TaskGroup) -> None:
        from supervisor.control.server import start_servers

        tg.start_soon(self._apply_batches)
        await start_servers(self, tg)
        tg.start_soon(self._watch_files)

    async def _shutdown(self) -> None:
        self._watch_stop.set()
        await super()._shutdown()

    def on_keys_changed(self, model: str, source: str) -> None:
        self._wake()
        self.request_apply(model)

    def request_apply(self, model: str | None = None) -> Batch:
        """The batch that will carry the latest change (opened if none is waiting): a
        change of `model`'s keys, or of anything (None)."""
        if self._batch is None:
            self._batch = Batch()
            self._batch_wake.set()
        batch = self._batch
        if model is None:
            batch.models = None
        elif batch.models is not None:
            batch.models.add(model)
        return batch

    async def _apply_batches(self) -> None:
        while True:
            await self._batch_wake.wait()
            self._batch_wake = anyio.Event()
            await anyio.sleep(self.loaded.stack.supervise.coalesce)
            batch, self._batch = self._batch, None
            if batch is None:
                continue
            async with self._apply_lock:
                await self._apply(batch)
            batch.applied.set()
            self._tg_start(self._settle_batch, batch)

    def _tg_start(self, func: Any, *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(func, *args)

    def _in_scope(self, runtime: UnitRuntime, models: set[str] | None) -> bool:
        return models is None or runtime.unit.model in models

    def changed_units(self, models: set[str] | None = None) -> list[UnitRuntime]:
        """Units (of `models`, or all) whose fresh rendering differs from the one they
        run (or ran) with."""
        changed = []
        for runtime in self.units.values():
            if not self._in_scope(runtime, models):
                continue
            if runtime.user_stopped or runtime.rendering is None:
                continue
            if runtime.status.state is State.STOPPED:
                continue
            try:
                fresh = self.render_unit(runtime)
            except (MissingModelKey, UnresolvedReference):
                changed.append(runtime)  # it must stop and wait (or fail) on its next start
                continue
            if fresh != runtime.rendering:
                changed.append(runtime)
        return changed

    async def _apply(self, batch: Batch) -> None:
        changed = self.changed_units(batch.models)
        if self._shutting_down:
            return
        if changed:
            self.printer.note(
                "restarting " + ", ".join(r.name for r in changed) + " (rendering changed)"
            )
        await self.stop_units(changed)
        for runtime in changed:
            runtime.failures.reset()
            runtime.restarts += 1
            batch.restarted.append(runtime.name)
            batch.generations[runtime.name] = runtime.generation
        for runtime in self.units.values():  # dependency order
            if runtime in changed and not runtime.user_stopped:
                self.start_task(runtime)
        # Units that were waiting for a key this change provided start by themselves;
        # the caller waits for them too.
        for runtime in self.units.values():
            if (
                self._in_scope(runtime, batch.models)
                and runtime.status.state is State.PENDING
                and runtime.has_task
                and runtime not in changed
                and self._blocked(runtime)[0] is None
            ):
                try:
                    self.render_unit(runtime)
                except (MissingModelKey, UnresolvedReference):
                    continue
                batch.restarted.append(runtime.name)
                batch.generations[runtime.name] = runtime.generation

    async def _settle_batch(self, batch: Batch) -> None:
        await self.wait_settled(batch.restarted, batch.generations)
        batch.done.set()

    async def wait_settled(
        self, names: Iterable[str], after: Mapping[str, int], timeout: float | None = None
    ) -> dict[str, str]:
        """Wait until each unit is ready (or completed) in an instance newer than
        `after[name]`, or failed; returns {unit: reason} for those that did not make it."""
        pending = list(names)
        failed: dict[str, str] = {}
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            while pending:
                for name in list(pending):
                    verdict = self._verdict(name, after.get(name, -1))
                    if verdict is not None:
                        pending.remove(name)
                        if verdict:
                            failed[name] = verdict
                if pending:
                    await self.wait_changed()
        for name in pending:
            runtime = self.units.get(name)
            state = runtime.status.describe() if runtime else "gone"
            failed[name] = f"not ready within {timeout:g} s (now {state})"
        return failed

    def _verdict(self, name: str, generation: int) -> str | None:
        """None: not settled yet; "": made it; otherwise why it did not."""
        runtime = self.units.get(name)
        if runtime is None:
            return "dropped"
        status = runtime.status
        newer = runtime.generation > generation
        if status.state is State.FAILED:
            return status.reason or "failed"
        if status.state is State.RUNNING and status.ready and newer:
            return ""
        if status.state is State.EXITED and newer:
            return (
                ""
                if status.exit_code == 0 or not runtime.unit.spec.oneshot
                else f"exited {status.exit_code}"
            )
        if status.state is State.STOPPED and runtime.user_stopped:
            return "stopped by a user"
        if status.state is State.PENDING:
            reason, stuck = self._blocked(runtime)
            if stuck:
                return reason or "cannot start"
        return None

    # ----------------------------------------------------------------- keys

    def _require_model(self, model: str) -> None:
        if model not in self.models:
            raise ControlError(
                "not_found", f"unknown model {model!r}; running: {', '.join(self.models) or 'none'}"
            )

    async def set_keys(
        self,
        model: str,
        keys: Mapping[str, str],
        unset: Iterable[str] = (),
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Change a model's runtime config; with `wait`, return once every restarted unit
        is ready again (or has failed)."""
        self._require_model(model)
        unset = list(unset)
        try:
            for key, value in keys.items():
                validate_key(key, value)
            for key in unset:
                validate_key(key, "")
        except InvalidValue as exc:
            raise ControlError("invalid", str(exc)) from exc
        before = self.model_keys(model)
        layer = self.api_keys.setdefault(model, {})
        layer.update(keys)
        for key in unset:
            layer.pop(key, None)
            self.published.get(model, {}).pop(key, None)
        after = self.model_keys(model)
        changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        answer: dict[str, Any] = {"model": model, "changed": changed, "restarted": [], "failed": {}}
        if not changed:
            answer["message"] = "nothing changed"
            return answer
        self.printer.set_secrets(self._secret_values())
        self._wake()
        batch = self.request_apply(model)
        if not wait:
            await batch.applied.wait()
            answer["restarted"] = batch.restarted
            return answer
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            await batch.done.wait()
        answer["restarted"] = batch.restarted
        if not batch.done.is_set():
            answer["failed"] = {
                name: f"not ready within {timeout:g} s"
                for name in batch.restarted
                if self._verdict(name, batch.generations.get(name, -1)) != ""
            }
        else:
            answer["failed"] = {
                name: v
                for name in batch.restarted
                if (v := self._verdict(name, batch.generations[name]))
            }
        return answer

    # ----------------------------------------------------------------- models

    def _add_model_units(self, model: str) -> list[UnitRuntime]:
        added = []
        for unit in expand(self.loaded.stack.processes, [model]).values():
            if unit.model == model and unit.name not in self.units:
                added.append(self._add_unit(unit))
        # keep self.units in dependency order across models: rebuild the dict
        order = expand(self.loaded.stack.processes, self.models)
        self.units = {n: self.units[n] for n in order if n in self.units}
        self.printer.set_units(self.units)
        return added

    async def launch(
        self, model: str, keys: Mapping[str, str], *, timeout: float | None = None
    ) -> dict[str, Any]:
        try:
            validate_model(model, keys)
        except InvalidValue as exc:
            raise ControlError("invalid", str(exc)) from exc
        async with self._apply_lock:
            if model in self.models:
                raise ControlError("conflict", f"model {model!r} is already running")
            self.dropped.discard(model)
            self.models.append(model)
            self.api_keys[model] = dict(keys)
            self.printer.set_secrets(self._secret_values())
            added = self._add_model_units(model)
            for runtime in added:
                self.start_task(runtime)
        self.printer.note(f"launched model {model}: {', '.join(r.name for r in added)}")
        failed = await self.wait_settled([r.name for r in added], {}, timeout)
        return {
            "model": model,
            "units": {r.name: self.unit_status(r) for r in added},
            "ports": {r.unit.process: self.ports[r.name] for r in added if r.name in self.ports},
            "failed": failed,
        }

    async def drop(self, model: str) -> dict[str, Any]:
        async with self._apply_lock:  # one mutation at a time: a second drop sees it gone
            self._require_model(model)
            members = [r for r in self.units.values() if r.unit.model == model]
            await self.stop_units(members)
            for runtime in members:
                self._forget_unit(runtime.name)
            self.models.remove(model)
            self.api_keys.pop(model, None)
            self.published.pop(model, None)
            self.dropped.add(model)
        self.printer.note(f"dropped model {model}")
        self._wake()
        self._check_end()
        return {"model": model, "stopped": [r.name for r in members]}

    # ----------------------------------------------------------------- units

    def unit(self, name: str) -> UnitRuntime:
        runtime = self.units.get(name)
        if runtime is None:
            raise ControlError("not_found", f"unknown unit {name!r}")
        return runtime

    async def stop_unit(self, name: str) -> dict[str, Any]:
        async with self._apply_lock:
            runtime = self.unit(name)
            runtime.user_stopped = True
            if not runtime.has_task and runtime.status.state is State.STOPPED:
                return {"unit": name, "message": f"{name} is already stopped"}
            await self.stop_task(runtime)
            if runtime.status.state is not State.STOPPED:
                self._set(runtime, State.STOPPED, reason="stopped by a user")
        self._wake()
        return {"unit": name, "message": f"{name} stopped"}

    async def start_unit(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        async with self._apply_lock:
            runtime = self.unit(name)
            if runtime.has_task and not runtime.user_stopped:
                return {
                    "unit": name,
                    "message": f"{name} is already {runtime.status.state}; nothing to do",
                }
            await runtime.done.wait()  # a stop still under way finishes first
            runtime.user_stopped = False
            runtime.failures.reset()
            generation = runtime.generation
            self.start_task(runtime)
        return await self._wait_one(name, generation, timeout, "started")

    async def restart_unit(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        ongoing = self._restarting.get(name)
        if ongoing is not None:  # concurrent restarts of one unit coalesce into one
            return await self._wait_one(name, ongoing, timeout, "restarted")
        runtime = self.unit(name)
        if runtime.status.state is State.PENDING and runtime.has_task:
            return {
                "unit": name,
                "message": f"{name} is pending ({runtime.status.reason}); nothing to restart",
            }
        generation = runtime.generation
        self._restarting[name] = generation  # claimed before any await
        try:
            async with self._apply_lock:
                runtime = self.unit(name)
                await self.stop_task(runtime)
                runtime.user_stopped = False
                runtime.failures.reset()
                runtime.restarts += 1
                self.start_task(runtime)
            return await self._wait_one(name, generation, timeout, "restarted")
        finally:
            self._restarting.pop(name, None)

    async def _wait_one(
        self, name: str, generation: int, timeout: float | None, verb: str
    ) -> dict[str, Any]:
        failed = await self.wait_settled([name], {name: generation}, timeout)
        if failed:
            return {"unit": name, "failed": failed, "message": f"{name} {failed[name]}"}
        runtime = self.unit(name)
        return {
            "unit": name,
            "message": f"{name} {verb}: {runtime.status.describe()}",
            "status": self.unit_status(runtime),
        }

    # ----------------------------------------------------------------- reload

    async def reload(self) -> dict[str, Any]:
        """Re-read the stack file; a bad one changes nothing and raises ControlError."""
        try:
            loaded = load_stack(self.loaded.file, self.loaded.environ)
            review = review_stack(loaded, [m for m in self.only_models if m in loaded.stack.models])
            if review.problems:
                raise ConfigError(review.problems)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.printer.note(f"reload refused, nothing changed:\n{exc}")
            raise ControlError("invalid_config", str(exc)) from exc
        self.config_error = ""
        async with self._apply_lock:
            summary = await self._adopt(loaded)
        batch = self.request_apply()
        await batch.applied.wait()
        summary["restarted"] = batch.restarted
        self.printer.note(
            "reloaded " + "; ".join(f"{k}: {', '.join(v)}" for k, v in summary.items() if v)
            if any(summary.values())
            else "reloaded: nothing changed"
        )
        return summary

    async def _adopt(self, loaded: LoadedStack) -> dict[str, Any]:
        new_processes = loaded.stack.processes
        only = self.only_models
        file_models = {
            n: dict(k)
            for n, k in loaded.stack.models.items()
            if (not only or n in only) and n not in self.dropped
        }
        launched = [m for m in self.models if m not in self.file_models]
        models = list(file_models) + [m for m in launched if m not in file_models]
        wanted = expand(new_processes, models)
        removed = [r for n, r in self.units.items() if n not in wanted]
        await self.stop_units(removed)
        for runtime in removed:
            self._forget_unit(runtime.name)
        self.loaded = loaded
        self.file_models = file_models
        for gone in set(self.models) - set(models):  # a model re-added later starts afresh
            self.api_keys.pop(gone, None)
            self.published.pop(gone, None)
        self.models = models
        added: list[UnitRuntime] = []
        for name, unit in wanted.items():
            existing = self.units.get(name)
            if existing is None:
                added.append(self._add_unit(unit))
                continue
            self._refresh_unit(existing, unit)
        self.units = {n: self.units[n] for n in wanted if n in self.units}
        self.printer.set_units(self.units)
        self.printer.set_secrets(self._secret_values())
        for runtime in added:
            self.start_task(runtime)
        # Units that failed on config get another chance with the new file.
        for runtime in self.units.values():
            if runtime.status.state is State.FAILED and runtime.rendering is None:
                self.start_task(runtime)
        self._wake()
        self._check_end()
        return {"added": [r.name for r in added], "removed": [r.name for r in removed]}

    async def on_sighup(self) -> None:
        with contextlib.suppress(ControlError):
            await self.reload()

    async def _watch_files(self) -> None:
        """Apply edits of the stack file and env files as reloads. If watching cannot
        work here (no inotify, its limits reached), say so and go on without it:
        `supervise reload` and SIGHUP still do the same."""
        try:
            await self._watch_files_forever()
        except Exception as exc:
            self.printer.note(f"not watching the stack file ({exc!r}); use `supervise reload`")

    async def _watch_files_forever(self) -> None:
        """Watch from a daemon thread of its own, so that a shutdown never waits for it;
        each relevant change wakes the event loop, which reloads."""
        from watchfiles import watch

        token = anyio.lowlevel.current_token()
        while not self._shutting_down:
            watched = {Path(p).resolve() for p in self.loaded.watched}
            directories = {str(p.parent) for p in watched if p.parent.is_dir()}
            if not directories:
                return
            stop = self._watch_stop = threading.Event()
            send, receive = anyio.create_memory_object_stream[BaseException | None](1)

            def hand_over(item: BaseException | None, send: Any = send) -> None:
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                    send.send_nowait(item)  # one pending wake-up is enough

            def run(
                stop: threading.Event = stop,
                watched: set[Path] = watched,
                directories: set[str] = directories,
            ) -> None:
                try:
                    for changes in watch(
                        *directories,
                        stop_event=stop,
                        debounce=50,
                        step=WATCH_STEP_MS,
                        rust_timeout=WATCH_TIMEOUT_MS,
                        recursive=False,
                        raise_interrupt=False,
                    ):
                        if any(Path(path).resolve() in watched for _, path in changes):
                            anyio.from_thread.run_sync(hand_over, None, token=token)
                except Exception as exc:
                    with contextlib.suppress(Exception):  # the loop may be gone already
                        anyio.from_thread.run_sync(hand_over, exc, token=token)

            threading.Thread(target=run, name="supervise-watch", daemon=True).start()
            async with receive:
                async for failure in receive:
                    if failure is not None:
                        raise failure
                    self.printer.note("stack or env file changed: reloading")
                    try:
                        await self.reload()
                    except ControlError:
                        pass  # reported by reload(); the running stack is untouched
                    except Exception as exc:
                        self.printer.note(f"reload failed, nothing changed: {exc!r}")
                    if {Path(p).resolve() for p in self.loaded.watched} != watched:
                        stop.set()  # env_files changed: watch the new set
                        break
