"""What keeps a unit from starting, whether that will change by itself, and what a caller
waiting for a unit is told. Pure: statuses in, values out.

- `blocker(unit, status_of)`: the first dependency condition that does not hold, or None.
- `key_blocker(...)`: a model key the unit needs and does not have yet.
- `verdict(status)`: a waiting caller's answer, or None while the outcome is still open.
- `finished(status)`: done for good, for the rule that `run` exits 0 when nothing is
  left running or able to run.

A blocker is *permanent* when nothing running will lift it — a dependency failed, was
stopped or ended, waits for good itself; a key nobody is about to publish — so waiting
callers are answered at once instead of at their deadline. A pending unit's status
carries its blocker, so a dependent sees "stuck for good" without looking further.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from supervisor.plan import Unit
from supervisor.state import ENDED, Blocker, State, Status, StopReason

StatusOf = Callable[[str], Status | None]

_VERBS = {"completed": "to complete", "ready": "to be ready", "started": "to start"}


def condition_holds(condition: str, status: Status) -> bool:
    if condition == "completed":
        return status.state is State.EXITED and status.exit_code == 0
    if condition == "ready":
        return status.state is State.RUNNING and status.ready
    return status.state in (State.RUNNING, State.EXITED)


def blocker(unit: Unit, status_of: StatusOf) -> Blocker | None:
    """Why `unit`'s dependencies keep it from starting (None: they allow it)."""
    for dep, condition in unit.depends_on:
        status = status_of(dep)
        if status is None:
            return Blocker(f"waiting for {dep} (not in the stack)", permanent=True, dependency=dep)
        if condition_holds(condition, status):
            continue
        if status.state is State.FAILED:
            return Blocker(f"{dep} failed", permanent=True, operator=True, dependency=dep)
        if status.state is State.STOPPED and status.stop is StopReason.USER:
            return Blocker(f"{dep} is stopped", permanent=True, operator=True, dependency=dep)
        if status.state is State.STOPPED and status.stop is StopReason.MODEL:
            return Blocker(
                f"{dep} is stopped: {status.reason}", permanent=True, operator=True, dependency=dep
            )
        wait = f"waiting for {dep} {_VERBS[condition]}"
        if status.state is State.EXITED:  # ended, and not in the way this unit needs
            return Blocker(f"{wait} ({status.describe()})", permanent=True, dependency=dep)
        inner = status.blocker
        if inner is not None and inner.permanent:
            return Blocker(
                f"{wait} ({inner.reason})",
                permanent=True,
                operator=inner.operator,
                dependency=dep,
            )
        return Blocker(wait, dependency=dep)
    return None


def key_blocker(model: str, key: str, publishers: Iterable[Status]) -> Blocker:
    """A missing model key: permanent unless a unit that declares it in `publishes` has
    yet to publish (a oneshot not completed, a service not yet ready)."""
    reason = f"waiting for {model} {key}"
    for status in publishers:
        done = status.state in ENDED or (status.state is State.RUNNING and status.ready)
        stuck = status.blocker is not None and status.blocker.permanent
        if not done and not stuck:
            return Blocker(reason, key=key)
    return Blocker(reason, permanent=True, operator=True, key=key)


@dataclass(frozen=True)
class Verdict:
    """What a caller waiting for a unit is told."""

    ok: bool
    reason: str = ""


def verdict(status: Status) -> Verdict | None:
    """The answer for a caller waiting for the unit's next instance, or None while that
    is still open."""
    state = status.state
    if status.ok:
        return Verdict(True)
    if state is State.EXITED:  # a service that ended with 0 under on-failure: done
        return Verdict(True) if status.exit_code == 0 else Verdict(False, status.describe())
    if state is State.FAILED:
        return Verdict(False, status.reason or "failed")
    if state is State.BACKOFF:  # the instance ended before it was ready
        return Verdict(False, status.reason)
    if state is State.STOPPED:
        return Verdict(False, f"stopped ({status.reason or status.stop})")
    if state is State.PENDING and status.blocker is not None and status.blocker.permanent:
        return Verdict(False, f"pending: {status.blocker.reason}")
    return None


def finished(status: Status) -> bool:
    """Done for good and nobody is expected to start it again: an exited unit, or one
    that waits for a dependency that will never be there."""
    if status.state is State.EXITED:
        return True
    found = status.blocker
    return (
        status.state is State.PENDING
        and found is not None
        and found.permanent
        and not found.operator
    )
