"""Unit states and the table of legal transitions. Pure: no I/O.

Every change of a unit's status goes through `advance`, which checks the table and
returns the new frozen status; the runtime publishes it as an `Event`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"  # waiting for dependencies or model keys (reason says which)
    STARTING = "starting"  # spawned, not yet past its start
    RUNNING = "running"  # alive; `ready` says whether its probe passed
    STOPPING = "stopping"  # stop signal sent, waiting for the tree to go
    STOPPED = "stopped"  # stopped by the supervisor or a user
    BACKOFF = "backoff"  # ended, waiting before the next start
    EXITED = "exited"  # ended and the policy leaves it so (a completed oneshot)
    FAILED = "failed"  # gave up


# Leaving a state for itself is how a reason or the ready flag changes.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.PENDING, State.STARTING, State.STOPPED, State.FAILED}),
    State.STARTING: frozenset(
        {State.STARTING, State.RUNNING, State.STOPPING, State.BACKOFF, State.EXITED, State.FAILED}
    ),
    State.RUNNING: frozenset(
        {State.RUNNING, State.STOPPING, State.BACKOFF, State.EXITED, State.FAILED}
    ),
    State.STOPPING: frozenset({State.STOPPING, State.STOPPED}),
    State.STOPPED: frozenset({State.PENDING, State.STARTING, State.STOPPED}),
    State.BACKOFF: frozenset({State.PENDING, State.STARTING, State.STOPPED, State.FAILED}),
    State.EXITED: frozenset({State.PENDING, State.STARTING, State.STOPPED}),
    State.FAILED: frozenset({State.PENDING, State.STARTING, State.STOPPED}),
}

# States in which the unit has (or is about to have) a live process.
LIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})


class IllegalTransition(RuntimeError):
    def __init__(self, unit: str, old: State, new: State) -> None:
        self.unit, self.old, self.new = unit, old, new
        super().__init__(f"{unit}: illegal transition {old} -> {new}")


@dataclass(frozen=True)
class Status:
    """A unit's status as a value."""

    state: State = State.PENDING
    ready: bool = False
    reason: str = ""
    pid: int | None = None
    exit_code: int | None = None

    def describe(self) -> str:
        words = [str(self.state)]
        if self.pid is not None and self.state in LIVE:
            words.append(f"pid {self.pid}")
        if self.ready:
            words.append("ready")
        if self.exit_code is not None and self.state not in LIVE and not self.reason:
            words.append(f"with {self.exit_code}")
        if self.reason:
            words.append(f"({self.reason})")
        return " ".join(words)


def advance(unit: str, status: Status, state: State, **changes: object) -> Status:
    """The status after moving to `state`; `ready` is cleared unless the unit stays
    running, and `reason` unless given.

    Raises:
        IllegalTransition: the table does not allow it.
    """
    if state not in TRANSITIONS[status.state]:
        raise IllegalTransition(unit, status.state, state)
    fields: dict[str, object] = {"state": state, "reason": ""}
    if state is not State.RUNNING:
        fields["ready"] = False
    if state in (State.PENDING, State.STARTING):
        fields["pid"] = None
        fields["exit_code"] = None
    fields.update(changes)
    return dataclasses.replace(status, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Event:
    """A published change of one unit's status."""

    ts: float  # wall clock, for display only
    unit: str
    old: Status
    new: Status
