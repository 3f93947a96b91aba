"""One unit, one task: a unit's whole life in the stack runs in `UnitRunner.run`, which
takes commands (`runtime.commands`) from its inbox and is the only writer of the unit's
status.

A *life* is the loop gate → instance → policy → backoff → gate …, run in a cancel scope
of the runner's; stopping means cancelling that scope, and the instance's shielded
teardown ends the process tree before the life is over.

Callers wait through a `Waiter` handed over with the command: it is answered by the
runner on the transition that settles it — ready, completed, failed, ended before ready,
stopped, or pending on something that will not change by itself — never by polling.
Concurrent restarts join the waiters of the one in flight: never two live instances,
but during an overlap (`overlap = true`): the old instance serves until its successor is
ready, or serves on (handed back) if the successor ends first, is rolled back or is not
wanted; a stop answers only when both are gone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.abc

from supervisor.errors import MissingModelKey, UnresolvedReference
from supervisor.osproc.spawn import Child
from supervisor.plan import Rendering
from supervisor.policy import Ended, Exited, FailureWindow, GiveUp, after_exit, why_ended
from supervisor.runtime import gate
from supervisor.runtime.commands import (
    Command,
    Replace,
    Restart,
    Retire,
    Start,
    Stop,
    Waiter,
    Watch,
    abandon,
)
from supervisor.runtime.gate import Verdict
from supervisor.runtime.instance import Instance, InstanceHost
from supervisor.runtime.record import UnitRecord
from supervisor.state import (
    ENDED,
    Blocker,
    Event,
    Phase,
    State,
    Status,
    StopReason,
    advance,
)


@dataclass(eq=False)
class _Serving:
    """Overlap: the instance that serves on while its successor starts, and its life."""

    instance: Instance
    life: anyio.CancelScope
    done: anyio.Event
    status: Status  # the unit's status when the successor was begun
    successor: anyio.CancelScope | None = None  # the successor's life
    handed_back: bool = False  # the successor failed and this instance serves on


class UnitHost(InstanceHost, Protocol):
    """What a unit's task needs from the stack around it."""

    phase: Phase

    def status_of(self, name: str) -> Status | None: ...

    def render(self, record: UnitRecord) -> Rendering: ...

    def key_blocker(self, record: UnitRecord, missing: MissingModelKey) -> Blocker: ...

    def transitioned(self, record: UnitRecord, event: Event) -> None: ...

    def note(self, text: str) -> None: ...


class UnitRunner:
    def __init__(self, record: UnitRecord, host: UnitHost) -> None:
        self.record, self.host = record, host
        spec = record.unit.spec
        self.failures = FailureWindow(spec.max_failures, spec.failure_window)
        self.waiters: list[Waiter] = []  # answered when the current life settles
        self._send, self._receive = anyio.create_memory_object_stream[Command](math.inf)
        self._life: anyio.CancelScope | None = None
        self._life_done = anyio.Event()
        self._life_done.set()
        self._instance: Instance | None = None  # the current life's instance, if spawned
        self._serving: _Serving | None = None  # overlap: the old instance, serving on
        self._leaving: _Serving | None = None  # overlap: the old instance, being stopped
        self._tg: anyio.abc.TaskGroup | None = None
        self._retired = False

    def __repr__(self) -> str:
        return f"<runner of {self.record!r}>"

    def send(self, command: Command) -> None:
        """Queue a command; one sent after the unit was retired is answered at once."""
        if not self._retired:
            try:
                self._send.send_nowait(command)
                return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                abandon(command, f"{self.record.name} has stopped with the stack")
                return
        abandon(command, f"{self.record.name} was removed from the stack")

    @property
    def alive(self) -> bool:
        """A life is under way (gating, running or backing off)."""
        return not self._life_done.is_set()

    async def run(self, *, autostart: bool) -> None:
        """The unit's task: from its first start until it is retired or cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if autostart:
                self._begin()
            async with self._receive:
                async for command in self._receive:
                    if isinstance(command, Retire):
                        await self._stop(StopReason.REMOVED, "removed from the stack")
                        self._retired = True
                        command.done.set()
                        break
                    try:
                        await self._handle(command)
                    except Exception as exc:  # a bug must not take other units with it
                        self.host.note(f"{self.record.name}: internal error: {exc!r}")
                        abandon(command, f"internal error: {exc!r}")
                while True:  # what came in after the retirement: answered, never lost
                    try:
                        gone = f"{self.record.name} was removed from the stack"
                        abandon(self._receive.receive_nowait(), gone)
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
            tg.cancel_scope.cancel()

    async def _handle(self, command: Command) -> None:
        if isinstance(command, (Start, Replace)) and self._user_stopped(command):
            return
        if isinstance(command, (Replace, Restart)):
            await self._let_leave()
        status = self.record.status
        if isinstance(command, Stop):
            await self._stop(command.reason, command.text)
            if command.done is not None:
                command.done.set()
        elif isinstance(command, Watch):
            if self.alive:
                self.waiters.append(command.waiter)
                if status.state is State.PENDING:
                    self.record.poke()  # its gate looks again, and answers
                else:
                    self._answer(status)
            else:
                command.waiter.resolve(gate.verdict(status) or Verdict(False, status.describe()))
        elif isinstance(command, Start):
            if self.alive:
                if command.waiter is not None:
                    command.waiter.resolve(
                        Verdict(
                            True,
                            f"{self.record.name} is already {status.describe()}; nothing to do",
                        )
                    )
                return
            self.failures.reset()
            self._begin(command.waiter)
        elif isinstance(command, Replace):
            if self._can_overlap():
                self._overlap(command.waiter)
            elif not await self._hand_back_if_current(command.waiter):
                await self._restart_now(command.waiter)
        elif isinstance(command, Restart):
            if self.alive and self.waiters:  # a restart is in flight: share its outcome
                if command.waiter is not None:
                    self.waiters.append(command.waiter)
                return
            if self.alive and status.state is State.PENDING:
                if command.waiter is not None:
                    command.waiter.resolve(
                        Verdict(
                            True,
                            f"{self.record.name} is pending ({status.reason}); nothing to restart",
                        )
                    )
                return
            if self._can_overlap():
                self._overlap(command.waiter)
                return
            await self._restart_now(command.waiter)

    def _user_stopped(self, command: Start | Replace) -> bool:
        """A change's restart of a unit a user stopped meanwhile: it stays stopped (True,
        answered so)."""
        status = self.record.status
        by_change = isinstance(command, Replace) or command.by_change
        if not by_change or status.state is not State.STOPPED or status.stop is not StopReason.USER:
            return False
        if command.waiter is not None:
            text = f"{self.record.name} was stopped by a user meanwhile; it stays stopped"
            command.waiter.resolve(Verdict(True, text))
        return True

    async def _let_leave(self) -> None:
        """Overlap: an instance replaced by the last overlap may still be stopping; the
        next overlap (which would take its hand-off slot) and a stop wait until it is
        gone, so no more than two instances ever live and a stop never answers early."""
        leaving = self._leaving
        if leaving is not None:
            leaving.life.cancel()
            await leaving.done.wait()

    async def _restart_now(self, waiter: Waiter | None) -> None:
        carried, self.waiters = self.waiters, []
        await self._end_life()
        if self.record.status.state in (State.STOPPING, State.STARTING, State.RUNNING):
            self._set(State.STOPPED, stop=StopReason.CHANGE, reason="restarting")
        self.failures.reset()
        self.waiters = carried
        self._begin(waiter)
        if self._serving is not None and not self._serving.handed_back:
            self._serving.successor = self._life  # the one it hands back to if this fails

    @property
    def overlapping(self) -> bool:
        """A restart replaces the serving instance without stopping it first: it is
        ready (`overlap = true`), or is already being replaced that way."""
        serving = self._serving
        return self._can_overlap() or (serving is not None and not serving.handed_back)

    def _can_overlap(self) -> bool:
        status = self.record.status
        return (
            self.record.unit.spec.overlap
            and self._instance is not None
            and status.state is State.RUNNING
            and status.ready
        )

    def _overlap(self, waiter: Waiter | None) -> None:
        """Start the next instance beside the running one (on the held socket); once it
        has settled, stop the old one, and only then answer."""
        assert self._tg is not None
        assert self._instance is not None
        assert self._life is not None
        serving = _Serving(self._instance, self._life, self._life_done, self.record.status)
        serving.instance.retire()  # it serves on, but no longer speaks for the unit
        self.record.take_other_slot()  # its own marker: stopping one never stops the other
        settled = Waiter(self.record.name)
        self._life = None
        self._life_done = anyio.Event()
        self.failures.reset()
        self._begin(settled)
        serving.successor = self._life
        self._serving = serving
        self._tg.start_soon(self._retire_after, settled, serving, waiter)

    async def _retire_after(
        self, settled: Waiter, serving: _Serving, waiter: Waiter | None
    ) -> None:
        try:
            await settled.done.wait()
            if self._serving is serving:
                self._serving = None
            # The successor is ready, or the unit is stopping. Tested by the flag, not by
            # `retired`: an instance handed back may already be retired by the next overlap.
            if not serving.handed_back:
                pid = _pid(serving)
                self._leaving = serving  # a stop, or the next overlap, waits for it
                serving.life.cancel()
                await serving.done.wait()
                if self._leaving is serving:
                    self._leaving = None
                replaced = settled.verdict is not None and settled.verdict.ok
                after = "its successor serves" if replaced else "the unit is stopping"
                self.host.observed(self.record, f"previous instance, pid {pid}, stopped: {after}")
        finally:
            # Also when the unit's task group is cancelled meanwhile (the unit removed by a
            # reload): `_stop` has ended both instances by then; the caller learns it now.
            if waiter is not None:
                cut = Verdict(False, "stopped before the new instance was ready")
                waiter.resolve(settled.verdict or cut)

    def _serve_on(self, life: anyio.CancelScope, ended: Ended) -> bool:
        """Overlap: a successor that ended before it was ready hands the unit back to
        the instance that served meanwhile, if that one still runs: its hand-off slot,
        rendering and status come back, and the waiters learn why the new one failed.
        Nothing reaches the failure domain: the unit never stopped serving."""
        serving = self._serving
        if serving is None or serving.successor is not life or ended.was_ready:
            return False
        self._serving = None
        if life.cancel_called or not _serves(serving, self.record):
            return False
        pid = _pid(serving)
        why = (
            f"the new instance ended before it was ready ({why_ended(ended)}); "
            f"the previous one, pid {pid}, serves on"
        )
        self._hand_back(serving, why, Verdict(False, why))
        return True

    async def _hand_back_if_current(self, waiter: Waiter | None) -> bool:
        """Overlap: asked to replace the unit while a successor starts, with the config
        the serving instance already has (a rollback, or a change undone): the
        successor goes and the serving instance speaks for the unit again, never
        stopped. False if there is no such instance to hand back to."""
        serving, record = self._serving, self.record
        if serving is None or serving.handed_back or not _serves(serving, record):
            return False
        record.take_other_slot()  # rendered as for the serving instance, in its slot
        try:
            current = self.host.render(record) == serving.instance.rendering
        except (MissingModelKey, UnresolvedReference):
            current = False
        finally:
            record.take_other_slot()
        if not current:
            return False
        self._serving = None
        serving.handed_back = True  # from now on its `_retire_after` leaves it running
        if self._instance is not None:
            self._instance.retire()  # the successor's stop is not the unit's
        await self._end_life()
        if not _serves(serving, record):  # it ended while the successor was stopped
            serving.life.cancel()
            await serving.done.wait()
            await self._restart_now(waiter)
            return True
        why = f"the previous instance, pid {_pid(serving)}, has this config and serves on"
        if waiter is not None:
            self.waiters.append(waiter)
        self._hand_back(serving, why, Verdict(False, f"superseded: {why}"), keep=waiter)
        return True

    def _hand_back(
        self, serving: _Serving, why: str, others: Verdict, keep: Waiter | None = None
    ) -> None:
        """Make the serving instance the unit's again; every waiter but `keep` (answered
        by the transition to ready) learns `others`."""
        old, record = serving.instance, self.record
        child = old.child
        assert child is not None
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if waiter is not keep:
                waiter.resolve(others)
        if keep is not None:
            self.waiters.append(keep)
        serving.handed_back = True
        record.take_other_slot()
        record.child, record.rendering = child, old.rendering
        old.reinstate(self)
        self._instance, self._life, self._life_done = old, serving.life, serving.done
        self.failures.reset()
        self.host.observed(record, why)
        self._set(State.RUNNING, pid=child.pid, ready=True, since=serving.status.since)

    def _begin(self, waiter: Waiter | None = None) -> None:
        assert self._tg is not None, "the unit's task is not running"
        if waiter is not None:
            self.waiters.append(waiter)
        self._life = anyio.CancelScope()
        self._life_done = anyio.Event()
        self._tg.start_soon(self._live, self._life, self._life_done)

    async def _end_life(self) -> None:
        if self._life is not None:
            self._life.cancel()
        await self._life_done.wait()
        self._life = None

    async def _stop(self, reason: StopReason, text: str) -> None:
        waiting, self.waiters = self.waiters, []  # the teardown does not settle them
        serving, self._serving = self._serving, None
        await self._end_life()
        if serving is not None and not serving.handed_back:
            # Overlap: the instance serving while its successor started goes too, before
            # the stop is answered (its own `_retire_after` would stop it only later).
            serving.life.cancel()
            await serving.done.wait()
        await self._let_leave()
        status = self.record.status
        if status.state in (State.STARTING, State.RUNNING):  # it ended as it was stopped
            self._set(State.STOPPING, pid=status.pid)
            status = self.record.status
        keep = status.state in (State.EXITED, State.FAILED) and reason is not StopReason.USER
        if not keep and (status.state is not State.STOPPED or status.stop is not reason):
            self._set(State.STOPPED, stop=reason, reason=text, exit_code=status.exit_code)
        for waiter in waiting:
            waiter.resolve(Verdict(False, f"stopped ({text or reason})"))

    async def _live(self, scope: anyio.CancelScope, done: anyio.Event) -> None:
        try:
            with scope:
                try:
                    await self._life_loop(scope)
                except Exception as exc:  # a bug must not take other units with it
                    self.host.note(f"{self.record.name}: internal error: {exc!r}")
                    state = self.record.status.state
                    if state is State.STOPPING:
                        self._set(State.STOPPED, stop=StopReason.CHANGE, reason="internal error")
                    if self.record.status.state not in ENDED:
                        self._set(State.FAILED, reason=f"internal error: {exc!r}")
        finally:
            done.set()

    async def _life_loop(self, life: anyio.CancelScope) -> None:
        record = self.record
        while True:
            rendering = await self._gate()
            if rendering is None:
                return
            record.rendering = rendering
            self._set(State.STARTING)
            instance = self._instance = Instance(record, rendering, self.host, self)
            try:
                ended = await instance.run()
            finally:
                if self._instance is instance:
                    self._instance = None
            if instance.retired:  # replaced: the next instance speaks for the unit now
                return
            if self._serve_on(life, ended):  # the instance it was to replace serves on
                return
            spec = record.unit.spec
            self.failures.limit, self.failures.window = spec.max_failures, spec.failure_window
            decision = after_exit(spec, ended, self.failures, anyio.current_time())
            if isinstance(decision, Exited):
                self._set(State.EXITED, exit_code=decision.exit_code)
                return
            if isinstance(decision, GiveUp):
                self._set(State.FAILED, reason=decision.reason, exit_code=ended.exit_code)
                return
            record.next_start = time.time() + decision.delay  # shown by `why`
            self._set(State.BACKOFF, reason=decision.reason, exit_code=ended.exit_code)
            await anyio.sleep(decision.delay)

    async def _gate(self) -> Rendering | None:
        """Wait until the unit may start; its rendering, or None if it never can."""
        record, host = self.record, self.host
        while True:
            wake = record.wake
            if host.phase is not Phase.RUNNING:
                await anyio.sleep_forever()  # shutting down: its Stop is on the way
            blocker = gate.blocker(record.unit, host.status_of)
            if blocker is None:
                try:
                    return host.render(record)
                except MissingModelKey as exc:
                    blocker = host.key_blocker(record, exc)
                except UnresolvedReference as exc:
                    self._set(State.FAILED, reason=str(exc))
                    return None
            if record.status.state is not State.PENDING or record.status.blocker != blocker:
                self._set(State.PENDING, blocker=blocker)
            else:
                self._answer(record.status)  # a waiter that came in since the last look
            await wake.wait()

    # Transitions made on behalf of the instance (see `instance.Transitions`).

    def spawned(self, child: Child) -> None:
        self._set(State.RUNNING, pid=child.pid, since=anyio.current_time())

    def became_ready(self, child: Child) -> None:
        self._set(State.RUNNING, pid=child.pid, ready=True)

    def became_unready(self, child: Child, reason: str) -> None:
        self._set(State.RUNNING, pid=child.pid, ready=False, reason=reason)

    def stopping(self, child: Child) -> None:
        self._set(State.STOPPING, pid=child.pid)

    def _set(self, state: State, **changes: object) -> None:
        record = self.record
        old = record.status
        new = advance(record.name, old, state, **changes)
        if new == old:
            return
        if state is not State.BACKOFF:
            record.next_start = None
        record.status = new
        self.host.transitioned(record, Event(time.time(), record.name, old, new))
        self._answer(new)

    def _answer(self, status: Status) -> None:
        if not self.waiters:
            return
        verdict = gate.verdict(status)
        if verdict is not None:
            waiters, self.waiters = self.waiters, []
            for waiter in waiters:
                waiter.resolve(verdict)


def _pid(serving: _Serving) -> int | None:
    child = serving.instance.child
    return child.pid if child is not None else None


def _serves(serving: _Serving, record: UnitRecord) -> bool:
    """The instance serving through an overlap still runs, and may be handed back to."""
    child = serving.instance.child
    return (
        child is not None
        and child.returncode is None
        and not serving.done.is_set()
        and not serving.life.cancel_called
        and not serving.instance.liveness  # failed its liveness probe: it is stopping
        and record.status.state in (State.STARTING, State.RUNNING)
    )
