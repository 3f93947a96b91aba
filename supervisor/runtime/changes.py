"""Changes of one model's runtime config, applied as transactions.

Invariants:
- A change batch belongs to one model: it re-renders, restarts, waits for and reports
  that model's units only (key changes cannot alter a global unit's rendering). Batches
  of different models run concurrently; changes to one model that arrive within the
  coalesce window, or while a batch of it is being applied, make one batch.
- Exactly the units whose rendering changed restart — dependents stopped first, then
  started in dependency order, each gated as at first start — and pending units that the
  change lets start are waited for too.
- A batch is a transaction: if a unit it restarted does not become ready (exit 78, a
  crash, a probe that never passes, pending on something that will not change), the
  model's previous keys are restored and the affected units restarted with them; the
  answer says "rolled back: UNIT failed: REASON". Without rollback the new keys stay and
  a required unit that failed fails its model. While a batch runs the model is
  `changing`, so a failure is the batch's to handle, not the failure domain's.
- What a oneshot the batch restarted publishes is part of the batch: the units whose
  rendering those keys change (the servers injecting the SIGNATURE an init publishes)
  restart within it, under its deadline and its rollback.
- A rollback restores keys that worked: it is given at least `DEFAULT_WAIT` to bring
  their units back, however short the caller's own deadline was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from supervisor.control.plane import DEFAULT_WAIT, ChangeResult
from supervisor.errors import MissingModelKey, UnresolvedReference
from supervisor.policy import without_retry
from supervisor.runtime import gate
from supervisor.runtime.commands import Replace, Start, Waiter
from supervisor.runtime.keys import KeyLayers
from supervisor.runtime.record import UnitRecord
from supervisor.runtime.supervisor import Supervisor
from supervisor.state import ModelState, State, StopReason

# Rounds of units restarted for what restarted oneshots published, within one change: a
# oneshot that publishes a new value at every run must not restart its model for ever.
PUBLISH_ROUNDS = 5


@dataclass(eq=False)
class Change:
    """One caller's change of a model's keys (or a unit's publish), queued."""

    set: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    rollback: bool = True
    timeout: float = DEFAULT_WAIT
    applied: anyio.Event = field(default_factory=anyio.Event)  # restarts are under way
    rolling_back: anyio.Event = field(default_factory=anyio.Event)  # a unit failed: undoing
    done: anyio.Event = field(default_factory=anyio.Event)
    changed: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    result: ChangeResult | None = None


@dataclass(eq=False)
class ModelQueue:
    pending: list[Change] = field(default_factory=list)
    lock: anyio.Lock = field(default_factory=anyio.Lock)  # one batch (or structural change)
    flushing: bool = False  # a task is applying this queue


@dataclass(frozen=True)
class Affected:
    restart: tuple[UnitRecord, ...]  # rendering changed (or can no longer render)
    watch: tuple[UnitRecord, ...]  # pending, and now able to start

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in (*self.restart, *self.watch))


def affected(sv: Supervisor, records: Iterable[UnitRecord]) -> Affected:
    """Which of `records` a change touches, judged by their fresh renderings."""
    restart, watch = [], []
    for record in records:
        status = record.status
        if status.state is State.STOPPED:
            continue  # stopped by a user or with its model: stays stopped
        if status.state is State.PENDING:
            # No instance: it renders afresh when it starts, which it does by itself once
            # nothing blocks it; then the change waits for it too.
            if gate.blocker(record.unit, sv.status_of) is None:
                try:
                    sv.render(record)
                except (MissingModelKey, UnresolvedReference):
                    continue
                watch.append(record)
            continue
        if record.rendering is None:
            if status.state is State.FAILED:
                restart.append(record)  # failed on config before it ever ran
            continue
        try:
            fresh = sv.render(record)
        except (MissingModelKey, UnresolvedReference):
            restart.append(record)  # it must stop and wait (or fail) on its next start
            continue
        if fresh != record.rendering:
            restart.append(record)
    return Affected(tuple(restart), tuple(watch))


def overlapping(sv: Supervisor, records: Iterable[UnitRecord]) -> list[UnitRecord]:
    """Units that restart by overlap (`overlap = true`, serving now or being replaced so):
    never stopped first."""
    return [r for r in records if r.name in sv.runners and sv.runners[r.name].overlapping]


async def stop_for_restart(
    sv: Supervisor, records: Iterable[UnitRecord], why: str
) -> list[UnitRecord]:
    """Stop what restarts by stopping (dependents first); the overlapping units serve
    on, and are returned: `restart_stopped` replaces them."""
    chosen = list(records)
    swap = overlapping(sv, chosen)
    await sv.stop_units([r for r in chosen if r not in swap], StopReason.CHANGE, why)
    return swap


def restart_stopped(
    sv: Supervisor, records: Iterable[UnitRecord], swap: Iterable[UnitRecord]
) -> list[Waiter]:
    """Start what `stop_for_restart` stopped, and replace the ones it left serving (a
    unit a user stopped meanwhile stays stopped: the runner answers so)."""
    swap = list(swap)
    again = [r for r in records if r not in swap]
    return sv.send(swap, Replace) + sv.send(again, lambda w: Start(w, by_change=True))


async def restart_and_wait(
    sv: Supervisor, targets: Affected, timeout: float, why: str, also: Sequence[Waiter] = ()
) -> dict[str, str]:
    """Restart `targets.restart` (dependents stopped first), wait for them, for
    `targets.watch` and for `also` (units started meanwhile), all within one `timeout`;
    {unit: reason} for those that did not make it."""
    if targets.restart:
        sv.note(f"restarting {', '.join(r.name for r in targets.restart)} ({why})")
    swap = await stop_for_restart(sv, targets.restart, f"restarting: {why}")
    waiters = restart_stopped(sv, targets.restart, swap) + sv.watch_units(targets.watch)
    return await wait_all(sv, [*also, *waiters], timeout)


async def follow_publishes(
    sv: Supervisor, model: str, applied: Mapping[str, str], deadline: float
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Restart, and wait for until `deadline`, the units whose rendering the keys that
    units published since `applied` was taken have changed — round after round, while
    a restarted oneshot publishes something new. ({unit: reason} for those that did not
    make it, the units restarted.)"""
    names: list[str] = []
    for _ in range(PUBLISH_ROUNDS):
        now = sv.keys.keys(model)
        if now == applied:
            break
        applied = now
        more = affected(sv, sv.of_model(model))
        if not more.names:
            break
        names += more.names
        left = max(deadline - anyio.current_time(), 0.0)
        failed = await restart_and_wait(sv, more, left, "published keys changed")
        if failed:
            return failed, tuple(names)
    return {}, tuple(names)


async def wait_all(sv: Supervisor, waiters: Sequence[Waiter], timeout: float) -> dict[str, str]:
    """Wait for every waiter, at most `timeout`; {unit: reason} for each that failed or
    was not settled in time. Returns as soon as every outcome is known."""
    with anyio.move_on_after(timeout):
        for waiter in waiters:
            await waiter.done.wait()
    failed = {}
    for waiter in waiters:
        if waiter.verdict is None:
            status = sv.status_of(waiter.unit)
            now = status.describe() if status is not None else "gone"
            failed[waiter.unit] = f"not ready within {timeout:g} s (then: {now})"
        elif not waiter.verdict.ok:
            failed[waiter.unit] = waiter.verdict.reason
    return failed


class Changes:
    """Per-model queues of changes, each applied as one transaction."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        self.queues: dict[str, ModelQueue] = {}

    def queue(self, model: str) -> ModelQueue:
        return self.queues.setdefault(model, ModelQueue())

    def submit(self, model: str, change: Change) -> None:
        queue = self.queue(model)
        queue.pending.append(change)
        if not queue.flushing:
            queue.flushing = True
            self.sv.start_soon(self._flush, model, queue)

    def withdraw(self, model: str, change: Change) -> bool:
        """Take back a change no batch has taken yet; False once one has."""
        queue = self.queue(model)
        if change in queue.pending:
            queue.pending.remove(change)
            return True
        return False

    def idle(self, model: str) -> bool:
        queue = self.queue(model)
        return not queue.pending and not queue.lock.locked()

    async def _flush(self, model: str, queue: ModelQueue) -> None:
        try:
            while queue.pending:
                # With `coalesce` 0 (the default) a change is applied at once; changes
                # that come while its units are being stopped join it (`_apply`).
                await anyio.sleep(self.sv.loaded.stack.supervise.coalesce)
                async with queue.lock:
                    batch, queue.pending = queue.pending, []
                    if batch:  # not all withdrawn while the lock was held
                        await self._apply(model, batch, queue)
        finally:
            queue.flushing = False

    def _take(self, model: str, changes: list[Change]) -> None:
        for change in changes:
            self.sv.keys.change(model, change.set, change.unset)
        for record in self.sv.of_model(model):
            record.poke()

    async def _apply(self, model: str, batch: list[Change], queue: ModelQueue) -> None:
        sv = self.sv
        if model not in sv.domains:
            gone = "it was dropped before the change applied; nothing changed"
            _finish(batch, ChangeResult(model, failed={f"model {model}": gone}))
            return
        snapshot = sv.keys.snapshot(model)
        before = sv.keys.keys(model)
        self._take(model, batch)
        changed = _changed(before, sv.keys.keys(model))
        status = sv.domains[model]
        if status.state is not ModelState.RUNNING:
            message = (
                f"model {model} is {status.describe()}; the new keys apply when it starts "
                f"again (`supervise start {model}`)"
            )
            _finish(batch, ChangeResult(model, changed, message=message))
            return
        targets = affected(sv, sv.of_model(model))
        if not targets.names:
            _finish(
                batch, ChangeResult(model, changed, message="" if changed else "nothing changed")
            )
            return
        sv.set_model(model, ModelState.CHANGING)
        restart, watch = list(targets.restart), list(targets.watch)
        if restart:
            sv.note(f"restarting {', '.join(r.name for r in restart)} (rendering changed)")
        swap = await stop_for_restart(sv, restart, "restarting: rendering changed")
        while queue.pending:  # came while those stopped: one restart for all of them
            more, queue.pending = queue.pending, []
            self._take(model, more)
            batch.extend(more)
            extra = affected(sv, [r for r in sv.of_model(model) if r not in (*restart, *watch)])
            swap += await stop_for_restart(sv, extra.restart, "restarting: rendering changed")
            restart += extra.restart
            watch += extra.watch
        changed = _changed(before, sv.keys.keys(model))
        names = tuple(r.name for r in (*restart, *watch))
        for change in batch:
            change.changed, change.restarted = changed, names
            change.applied.set()
        rollback = any(c.rollback for c in batch if c.set or c.unset)
        timeout = max(c.timeout for c in batch)
        deadline = anyio.current_time() + timeout
        applied = sv.keys.keys(model)
        waiters = restart_stopped(sv, restart, swap) + sv.watch_units(watch)
        failed = await wait_all(sv, waiters, timeout)
        if not failed:
            failed, also = await follow_publishes(sv, model, applied, deadline)
            names += tuple(n for n in also if n not in names)
        result = ChangeResult(model, changed, names, failed)
        if failed and rollback:
            for change in batch:
                change.rolling_back.set()
            result = await self._roll_back(model, snapshot, result, max(timeout, DEFAULT_WAIT))
        if sv.domains.get(model, status).state is ModelState.CHANGING:
            sv.set_model(model, ModelState.RUNNING)
            sv.check_domain(model)
        _finish(batch, result)

    async def _roll_back(
        self, model: str, snapshot: KeyLayers, result: ChangeResult, timeout: float
    ) -> ChangeResult:
        sv = self.sv
        failed = {name: without_retry(why) for name, why in result.failed.items()}
        unit, reason = next(iter(failed.items()))
        sv.keys.restore(model, snapshot)
        sv.note(f"rolling back model {model}: {what_happened(unit, reason)}")
        for record in sv.of_model(model):
            record.poke()
        deadline = anyio.current_time() + timeout
        restored = sv.keys.keys(model)
        again = await restart_and_wait(
            sv, affected(sv, sv.of_model(model)), timeout, "rolling back"
        )
        if not again:
            again, _ = await follow_publishes(sv, model, restored, deadline)
        message = f"rolled back: {what_happened(unit, reason)}"
        if again:
            other, why = next(iter(again.items()))
            message += f"; after the rollback {other} failed too: {why}"
            sv.fail_model(model, f"{other} failed after a rollback: {why}")
        return ChangeResult(
            model, result.changed, result.restarted, failed, message, rolled_back=True
        )


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(k for k in {*before, *after} if before.get(k) != after.get(k)))


def what_happened(unit: str, reason: str) -> str:
    """'alpha/trade failed: exited 78', 'alpha/trade pending: waiting for alpha DAY'."""
    if reason.startswith(("pending:", "stopped", "not ready within")):
        return f"{unit} {reason}"
    return f"{unit} failed: {reason}"


def _finish(batch: Iterable[Change], result: ChangeResult) -> None:
    for change in batch:
        change.result = result
        change.applied.set()
        change.done.set()
