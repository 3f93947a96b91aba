"""Reloading the stack file (`supervise reload`, SIGHUP, a watched edit) as a transaction.

Invariants:
- A bad new file changes nothing: it is read, validated and checked in full first; the
  error is kept for `status` and is the answer.
- A reload reports exactly what it started, stopped and restarted: units new in the file
  start, units gone from it stop and are forgotten, units whose rendering changed
  restart (dependents stopped first), in every model and among the global units.
- If a unit the reload started or restarted does not become ready, the previous stack is
  adopted again (its units restarted with it) and the answer says "rolled back".
- Models dropped through the API stay dropped; API keys of running models are kept.
- A failed model stays failed: the reload neither restarts nor starts its units (they
  take the new file when `start MODEL` brings the model back), so it can never make the
  reload roll back the other models.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from supervisor.config.load import LoadedStack
from supervisor.config.validator import load_elsewhere
from supervisor.control.plane import ReloadResult
from supervisor.digest import sha256_hex
from supervisor.errors import ConfigError, ControlError
from supervisor.plan import Unit, expand
from supervisor.policy import without_retry
from supervisor.runtime.changes import (
    Affected,
    Changes,
    affected,
    follow_publishes,
    restart_and_wait,
    what_happened,
)
from supervisor.runtime.keys import KeyLayers
from supervisor.runtime.record import UnitRecord
from supervisor.runtime.supervisor import Supervisor, base_pairs
from supervisor.state import ModelState, ModelStatus, StopReason

_FAILED = (ModelState.STOPPING, ModelState.FAILED)  # a failed model, its units stopped


@dataclass(frozen=True)
class Adoption:
    added: tuple[UnitRecord, ...]
    removed: tuple[str, ...]
    targets: Affected
    forgotten: dict[str, KeyLayers]  # the published and API keys of models it removed

    @property
    def domains(self) -> set[str | None]:
        return {r.model for r in (*self.added, *self.targets.restart, *self.targets.watch)}


@dataclass
class _Flight:
    """A reload under way, for a reload of the same file version to join."""

    version: str
    done: anyio.Event
    result: ReloadResult | None = None
    error: ControlError | None = None


class Reloader:
    """Applies reloads; keeps the last one's error for `status` (empty when it took)."""

    def __init__(
        self,
        sv: Supervisor,
        changes: Changes,
        structure: anyio.Lock,
        dropped: set[str],
        launched: set[str],
    ) -> None:
        self.sv, self.changes, self.structure = sv, changes, structure
        self.dropped, self.launched = dropped, launched
        self.config_error = ""
        self.count = 0  # reloads asked for
        self.last_ok = True  # the last one took (none asked for: the start's load did)
        self.last_ok_at: float | None = None  # wall clock of the last one that took
        self._applying: _Flight | None = None  # the reload under way
        # The last reload that changed something: (version, by whom, when, its answer).
        self._applied: tuple[str, str, float, ReloadResult] | None = None

    async def reload(self, timeout: float, by: str = "") -> ReloadResult:
        """Apply the stack file as it is now. A reload asked while another one applies
        the same content (the file watcher's, after an edit) waits for that one and
        gives its answer; one that finds nothing changed says who applied it."""
        version = self._version()
        joined = self._applying
        if joined is not None and joined.version == version:
            await joined.done.wait()
            if joined.error is not None:
                raise joined.error
            if joined.result is not None:
                return joined.result
        flight = _Flight(version, anyio.Event())
        self._applying = flight
        try:
            flight.result = await self._reload(timeout)
        except ControlError as exc:
            flight.error = exc
            raise
        finally:
            flight.done.set()
            if self._applying is flight:
                self._applying = None
        result = flight.result
        if _what_changed(result) and not result.rolled_back:
            self._applied = (version, by, time.time(), result)
        elif not result.rolled_back and not result.failed and self._applied is not None:
            last_version, last_by, at, last = self._applied
            if last_version == version and last_by and last_by != by:
                done = _what_changed(last)
                when = time.strftime("%H:%M:%S", time.localtime(at))
                result = ReloadResult(
                    message=f"reloaded: nothing changed ({last_by} applied this version "
                    f"at {when}: {done})"
                )
        return result

    def _version(self) -> str:
        """A digest of the stack file and its env files as they are now."""
        parts = []
        for path in self.sv.loaded.watched:
            try:
                parts.append(path.read_bytes())
            except OSError:
                parts.append(b"\0missing")
        return sha256_hex(b"\0\0".join(parts))

    async def _reload(self, timeout: float) -> ReloadResult:
        sv = self.sv
        self.count += 1
        self.last_ok = False  # until it took
        try:
            # In a new interpreter: pydantic never enters this process, and the event
            # loop goes on serving while the file is validated.
            loaded, _ = await load_elsewhere(
                sv.loaded.file,
                sv.loaded.environ,
                sv.selection,
                workdir=sv.runtime_dir,
                reaper=sv.reaper,
            )
        except (ConfigError, RuntimeError) as exc:
            raise self._refused(exc) from exc
        async with self.structure, contextlib.AsyncExitStack() as locks:
            for model in sorted(sv.models):
                await locks.enter_async_context(self.changes.queue(model).lock)
            previous = sv.loaded
            launched = [m for m in sv.models if m in self.launched]  # by the API
            # The new plan's held ports are bound before anything changes: a port that
            # another program holds refuses the reload like an invalid file.
            _, _, wanted = self._plan(loaded, launched)
            plan = {name: (u.spec.port, u.spec.socket) for name, u in wanted.items()}
            try:
                sv.ports.reserve(plan, file=str(loaded.file))
            except ConfigError as exc:
                raise self._refused(exc) from exc
            try:
                adoption = await self._adopt(loaded, launched)
            finally:
                sv.ports.unreserve()
            marked = self._mark(adoption.domains)
            failed, also = await self._settle(adoption, timeout)
            restarted = [r.name for r in adoption.targets.restart]
            result = ReloadResult(
                tuple(r.name for r in (*adoption.added, *adoption.targets.watch)),
                adoption.removed,
                (*restarted, *(n for n in also if n not in restarted)),
                failed,
            )
            if failed:
                failed = {name: without_retry(why) for name, why in failed.items()}
                unit, reason = next(iter(failed.items()))
                happened = what_happened(unit, reason)
                sv.note(f"reload rolled back: {happened}")
                with sv.ports.lenient() as lost:  # a port taken meanwhile: said, not raised
                    back = await self._adopt(previous, launched, adoption.forgotten)
                marked |= self._mark(back.domains)
                await self._settle(back, timeout, "rolling back the reload")
                if lost:
                    missing = "not restored: " + "; ".join(p.message for p in lost)
                    sv.note(f"reload rolled back, {missing}")
                    happened += f"; {missing}"
                self.config_error = f"reload rolled back: {happened}"
                result = ReloadResult(
                    result.started,
                    result.stopped,
                    result.restarted,
                    failed,
                    f"rolled back: {happened}",
                    rolled_back=True,
                )
            else:
                self.config_error = ""
                self.last_ok, self.last_ok_at = True, time.time()
            self._unmark(marked)
        changes = _what_changed(result)
        if not result.rolled_back:  # a rollback said so when it began
            sv.note("reloaded: " + (changes or "nothing changed"))
        if not changes and not result.message:
            result = ReloadResult(message="reloaded: nothing changed")
        return result

    def _refused(self, exc: Exception) -> ControlError:
        """A reload that changes nothing: the error is kept for `status` and answered."""
        self.config_error = str(exc)
        self.sv.note(f"reload refused, nothing changed:\n{exc}")
        return ControlError("invalid_config", str(exc))

    def _mark(self, domains: set[str | None]) -> set[str | None]:
        """Make the touched failure domains `changing`: a failure now rolls back."""
        sv = self.sv
        marked = set()
        for domain in domains:
            if domain in sv.domains and sv.domains[domain].state is ModelState.RUNNING:
                sv.set_model(domain, ModelState.CHANGING)
                marked.add(domain)
        return marked

    def _unmark(self, domains: set[str | None]) -> None:
        sv = self.sv
        for domain in domains:
            if domain in sv.domains and sv.domains[domain].state is ModelState.CHANGING:
                sv.set_model(domain, ModelState.RUNNING)
                sv.check_domain(domain)

    async def _settle(
        self, adoption: Adoption, timeout: float, why: str = "the stack file changed"
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        """Start and restart what the adoption asks, then what the keys its oneshots
        published re-render (as a `set` does); {unit: reason} for failures, and the
        units restarted for those keys."""
        sv = self.sv
        deadline = anyio.current_time() + timeout
        touched = (*adoption.added, *adoption.targets.restart, *adoption.targets.watch)
        models = sorted({r.model for r in touched if r.model is not None})
        applied = {model: sv.keys.keys(model) for model in models}
        started = sv.start_units(adoption.added)
        failed = await restart_and_wait(sv, adoption.targets, timeout, why, started)
        also: tuple[str, ...] = ()
        for model in models:
            if failed or model not in sv.domains:
                continue
            failed, more = await follow_publishes(sv, model, applied[model], deadline)
            also += more
        return failed, also

    def _plan(
        self, loaded: LoadedStack, launched: list[str]
    ) -> tuple[dict[str, dict[str, str]], list[str], dict[str, Unit]]:
        """What adopting `loaded` runs: the file's models, every model (`launched` ones
        kept, dropped ones not), and their units."""
        sv = self.sv
        file_models = sv.file_models(loaded)
        models = [m for m in file_models if m not in self.dropped]
        models += [m for m in launched if m not in models]
        return file_models, models, expand(loaded.stack.processes, models)

    async def _adopt(
        self,
        loaded: LoadedStack,
        launched: list[str],
        restore: Mapping[str, KeyLayers] | None = None,
    ) -> Adoption:
        """Make `loaded` the running stack's plan: forget what it no longer has, register
        what it adds (not started yet), and find what its renderings change. `restore`:
        keys a rollback gives back to the models the failed plan had removed."""
        sv = self.sv
        file_models, models, wanted = self._plan(loaded, launched)
        removed = [r for n, r in sv.records.items() if n not in wanted]
        await sv.retire(removed)
        sv.loaded = loaded
        sv.keys.set_file(file_models, base_pairs(loaded))
        forgotten = {}
        for gone in [m for m in sv.models if m not in models]:
            forgotten[gone] = sv.keys.snapshot(gone)
            sv.keys.forget(gone)
            del sv.domains[gone]
        for model, layers in (restore or {}).items():
            if model in models:
                sv.keys.restore(model, layers)
        for model in models:
            sv.domains.setdefault(model, ModelStatus())
        for name, unit in wanted.items():
            if name in sv.records:
                sv.refresh(sv.records[name], unit)
        added = sv.add_units([u for n, u in wanted.items() if n not in sv.records], start=False)
        sv.reorder(wanted)
        resting = {m for m, d in sv.domains.items() if m is not None and d.state in _FAILED}
        for model in sorted(resting):
            new_ones = [r for r in added if r.model == model]
            await sv.stop_units(new_ones, StopReason.MODEL, f"model {model} failed")
        added = [r for r in added if r.model not in resting]
        targets = affected(
            sv, [r for r in sv.records.values() if r not in added and r.model not in resting]
        )
        for record in sv.records.values():
            record.poke()
        return Adoption(tuple(added), tuple(r.name for r in removed), targets, forgotten)


def _what_changed(result: ReloadResult) -> str:
    """What a reload changed, as "started: a; restarted: b, c"; "" when nothing."""
    lists = {"started": result.started, "stopped": result.stopped, "restarted": result.restarted}
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in lists.items() if v)
