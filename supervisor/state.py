"""States as values, and the tables of legal transitions. Pure: no I/O, standard library
only (the CLI formats these without importing the runtime).

Three things have a state: a unit (`State`, `Status`), a model (`ModelState`,
`ModelStatus`) and the supervisor itself (`Phase`). Every change of a unit's or model's
status goes through `advance` / `advance_model`, which check the table and return the new
frozen value; the runtime publishes it as an `Event` / `ModelEvent`. Nothing beside these
values records state: why a unit is stopped is `Status.stop`, not a flag next to it.
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
    STOPPED = "stopped"  # stopped; `stop` says by whom
    BACKOFF = "backoff"  # ended, waiting before the next start
    EXITED = "exited"  # ended and the policy leaves it so (a completed oneshot)
    FAILED = "failed"  # gave up


# Leaving a state for itself is how a reason or the ready flag changes.
# A STARTING unit may stop before it has a process (a warm start cancelled while the
# zygote imports); a unit that starts again may fail in its gate (an unresolvable
# reference after a reload).
_START_AGAIN = frozenset({State.PENDING, State.STARTING, State.STOPPED, State.FAILED})
TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: _START_AGAIN,
    State.STARTING: frozenset(
        {
            State.STARTING,
            State.RUNNING,
            State.STOPPING,
            State.STOPPED,
            State.BACKOFF,
            State.EXITED,
            State.FAILED,
        }
    ),
    # RUNNING -> STARTING: an overlapping restart (the old instance serves meanwhile);
    # RUNNING -> PENDING: its successor waits in its gate (a key unset, a dependency down).
    State.RUNNING: frozenset(
        {
            State.RUNNING,
            State.PENDING,
            State.STARTING,
            State.STOPPING,
            State.STOPPED,
            State.BACKOFF,
            State.EXITED,
            State.FAILED,
        }
    ),
    State.STOPPING: frozenset({State.STOPPING, State.STOPPED}),
    State.STOPPED: _START_AGAIN,
    State.BACKOFF: _START_AGAIN,
    State.EXITED: _START_AGAIN,
    State.FAILED: _START_AGAIN,
}

# Named groups (supervisord's states.py habit).
LIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})  # a process exists
ENDED = frozenset({State.STOPPED, State.EXITED, State.FAILED})  # no process, none coming
WAITING = frozenset({State.PENDING, State.BACKOFF})  # no process yet, one coming


class StopReason(StrEnum):
    """Who stopped a unit; decides whether it starts again by itself."""

    USER = "user"  # `supervise stop`: stays stopped across changes until started again
    CHANGE = "change"  # stopped to be restarted with a new rendering
    MODEL = "model"  # its model failed
    SHUTDOWN = "shutdown"  # the stack is stopping
    REMOVED = "removed"  # dropped or no longer in the stack file


class IllegalTransition(RuntimeError):
    def __init__(self, unit: str, old: str, new: str) -> None:
        self.unit, self.old, self.new = unit, old, new
        super().__init__(f"{unit}: illegal transition {old} -> {new}")


@dataclass(frozen=True)
class Blocker:
    """Why a pending unit cannot start."""

    reason: str
    permanent: bool = False  # nothing running will lift it: waiters are answered at once
    operator: bool = False  # an operator can lift it (start a unit, set a key)
    dependency: str = ""  # the unit it waits for, if that is what blocks it
    key: str = ""  # the model key it waits for, if that is what blocks it


@dataclass(frozen=True)
class Status:
    """A unit's status as a value."""

    state: State = State.PENDING
    ready: bool = False
    reason: str = ""
    pid: int | None = None
    exit_code: int | None = None
    stop: StopReason | None = None  # set exactly when state is STOPPED
    starts: int = 0  # instances spawned so far
    since: float | None = None  # monotonic time the current instance was spawned
    blocker: Blocker | None = None  # set exactly when state is PENDING

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def ok(self) -> bool:
        """Ready, or done: what a dependent on `ready`, `/readyz` and a waiter want."""
        return (self.state is State.RUNNING and self.ready) or (
            self.state is State.EXITED and self.exit_code == 0
        )

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
    running, `reason` and `stop` unless given; entering STARTING counts an instance.

    Raises:
        IllegalTransition: the table does not allow it.
    """
    if state not in TRANSITIONS[status.state]:
        raise IllegalTransition(unit, status.state, state)
    fields: dict[str, object] = {"state": state, "reason": "", "stop": None, "blocker": None}
    if state is not State.RUNNING:
        fields["ready"] = False
    if state in (State.PENDING, State.STARTING):
        fields["pid"] = None
        fields["exit_code"] = None
    if state is State.STARTING and status.state is not State.STARTING:
        fields["starts"] = status.starts + 1
    fields.update(changes)
    blocker = fields["blocker"]
    if isinstance(blocker, Blocker):
        fields["reason"] = blocker.reason
    if (blocker is None) is (state is State.PENDING):
        raise IllegalTransition(unit, status.state, f"{state} (blocker {blocker})")
    if (fields["stop"] is None) is (state is State.STOPPED):
        raise IllegalTransition(unit, status.state, f"{state} (stop reason {fields['stop']})")
    return dataclasses.replace(status, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Event:
    """A published change of one unit's status."""

    ts: float  # wall clock, for display only
    unit: str
    old: Status
    new: Status


class ModelState(StrEnum):
    RUNNING = "running"  # its units run (or start) as their policies say
    CHANGING = "changing"  # a change is being applied: a unit failure is the change's
    STOPPING = "stopping"  # failed: its units are being stopped
    FAILED = "failed"  # its units are stopped; `start MODEL` or `launch` bring it back


MODEL_TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    ModelState.RUNNING: frozenset({ModelState.CHANGING, ModelState.STOPPING}),
    ModelState.CHANGING: frozenset({ModelState.RUNNING, ModelState.STOPPING}),
    ModelState.STOPPING: frozenset({ModelState.FAILED}),
    ModelState.FAILED: frozenset({ModelState.RUNNING}),
}


@dataclass(frozen=True)
class ModelStatus:
    state: ModelState = ModelState.RUNNING
    reason: str = ""

    def describe(self) -> str:
        return f"{self.state} ({self.reason})" if self.reason else str(self.state)


def advance_model(
    model: str, status: ModelStatus, state: ModelState, reason: str = ""
) -> ModelStatus:
    """The model's status after moving to `state`.

    Raises:
        IllegalTransition: the table does not allow it.
    """
    if state not in MODEL_TRANSITIONS[status.state]:
        raise IllegalTransition(f"model {model}", status.state, state)
    return ModelStatus(state, reason)


@dataclass(frozen=True)
class ModelEvent:
    """A published change of one model's status."""

    ts: float
    model: str
    old: ModelStatus
    new: ModelStatus


class Phase(StrEnum):
    """The supervisor's own phase."""

    RUNNING = "running"  # units start and restart as their policies say
    STOPPING = "stopping"  # graceful shutdown: nothing starts any more
    FORCED = "forced"  # second Ctrl-C or shutdown budget spent: everything is killed
