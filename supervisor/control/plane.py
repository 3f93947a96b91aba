"""The contract between the runtime and its front ends (control socket, health port,
CLI): the calls a front end may make and the values that cross. Pure: values and a
Protocol, no implementation (process-compose's `app.IProject` is the idea).

`runtime.live.LiveConfig` implements `ControlPlane`; the control server and the health
port are written against this module only, so neither side imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from anyio.streams.memory import MemoryObjectReceiveStream

from supervisor.secrets import Redactor
from supervisor.state import Event, ModelEvent, ModelStatus, Status

DEFAULT_WAIT = 60.0  # how long a waiting call (set, start, restart, launch, reload) waits


@dataclass(frozen=True)
class LogRecord:
    """One line of a unit's output."""

    ts: float
    unit: str
    stream: str
    line: str
    about: str | None = None  # for the supervisor's own events: the unit they concern


@dataclass(frozen=True)
class UnitView:
    """One unit as front ends see it."""

    name: str
    process: str
    model: str | None
    status: Status
    port: int | None
    required: bool
    note: str = ""  # the latest sd_notify STATUS=
    leader: int | None = None  # the live instance's pid


@dataclass(frozen=True)
class StackView:
    pid: int
    stack_file: str
    socket: str
    units: tuple[UnitView, ...]
    models: Mapping[str, ModelStatus]
    config_error: str = ""


@dataclass(frozen=True)
class Membership:
    """What tells a caller of the control socket apart: unit leaders, the supervisor's
    own helpers, and the marker every unit process carries."""

    leaders: Mapping[int, UnitView]
    helpers: frozenset[int]
    marker_prefix: bytes


@dataclass(frozen=True)
class ChangeResult:
    model: str
    changed: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    rolled_back: bool = False


@dataclass(frozen=True)
class UnitResult:
    name: str
    message: str
    failed: Mapping[str, str] = field(default_factory=dict)
    units: tuple[UnitView, ...] = ()


@dataclass(frozen=True)
class LaunchResult:
    model: str
    units: tuple[UnitView, ...]
    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DropResult:
    model: str
    stopped: tuple[str, ...]


@dataclass(frozen=True)
class ReloadResult:
    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    rolled_back: bool = False


class ControlPlane(Protocol):
    """Everything a front end may ask of a running stack. Mutations raise
    `supervisor.errors.ControlError` for requests that cannot be done."""

    @property
    def redactor(self) -> Redactor: ...

    def view(self) -> StackView: ...

    def unit_view(self, name: str) -> UnitView: ...

    def model_keys(self, model: str) -> dict[str, str]: ...

    def membership(self) -> Membership: ...

    def recent_logs(self, unit: str | None, *, events: bool = True) -> list[LogRecord]: ...

    def subscribe_events(self) -> MemoryObjectReceiveStream[Event | ModelEvent]: ...

    def subscribe_logs(self) -> MemoryObjectReceiveStream[LogRecord]: ...

    async def set_keys(
        self,
        model: str,
        keys: Mapping[str, str],
        unset: tuple[str, ...] = (),
        *,
        wait: bool = True,
        timeout: float = DEFAULT_WAIT,
        rollback: bool = True,
    ) -> ChangeResult: ...

    async def launch(
        self, model: str, keys: Mapping[str, str], *, timeout: float = DEFAULT_WAIT
    ) -> LaunchResult: ...

    async def drop(self, model: str) -> DropResult: ...

    async def start(self, name: str, *, timeout: float = DEFAULT_WAIT) -> UnitResult: ...

    async def stop(self, name: str) -> UnitResult: ...

    async def restart(self, name: str, *, timeout: float = DEFAULT_WAIT) -> UnitResult: ...

    async def reload(self, *, timeout: float = DEFAULT_WAIT) -> ReloadResult: ...
