"""The contract between the runtime and its front ends (control socket, health port,
CLI): the calls a front end may make and the values that cross. Pure: values and a
Protocol, no implementation (process-compose's `app.IProject` is the idea).

`runtime.live.LiveConfig` implements `ControlPlane`; the control server and the health
port are written against this module only, so neither side imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from supervisor.observe import Note, ProbeStats, ToolList, ToolsEvent
from supervisor.secrets import Redactor
from supervisor.state import Event, ModelEvent, ModelStatus, Status

TYPE_CHECKING = False  # the streams' module is anyio's; only its type is needed here
if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

DEFAULT_WAIT = 60.0  # how long a waiting call (set, start, restart, launch, reload) waits
MAX_WAIT = 86_400.0  # the longest a waiting call may be asked to wait (a day)


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
    tools: ToolList | None = None  # what its mcp probe listed when it last became ready
    probes: tuple[ProbeStats, ...] = ()  # latencies of its ready and live probes
    live_failures: int = 0  # consecutive failed liveness attempts right now


@dataclass(frozen=True)
class Counters:
    """What the supervisor counted since it started (for /metrics)."""

    started: float = 0.0  # wall clock
    reloads: int = 0  # reloads asked for (file edits, SIGHUP, `supervise reload`)
    last_reload_ok: bool = True  # the last reload took (or none was asked for yet)
    last_reload_at: float | None = None  # wall clock of the last reload that took
    changes: Mapping[str, int] = field(default_factory=dict)  # per model: changes applied
    # Per model: seconds its last change (a `set`, a reload) took, until ready again.
    last_change_seconds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitHistory:
    """What `supervise why` explains a unit from: its recent events and notes (oldest
    first), its last stderr lines, and the rules that decide what comes next."""

    view: UnitView
    entries: tuple[Event | Note | ToolsEvent, ...]
    stderr: tuple[str, ...]  # the last few non-empty stderr lines
    depends_on: tuple[tuple[str, str], ...]  # (unit, condition)
    restart: str  # its restart policy
    max_failures: int
    failure_window: float
    recent_failures: int  # failures inside the window now
    next_start: float | None  # wall clock of the start a backoff waits for
    probe: str  # its ready probe kind ("" without one)
    probe_error: str  # the latest failed probe attempt's error
    live: str  # its live probe kind ("" without one)


@dataclass(frozen=True)
class StackView:
    pid: int
    stack_file: str
    socket: str
    units: tuple[UnitView, ...]
    models: Mapping[str, ModelStatus]
    config_error: str = ""
    counters: Counters = field(default_factory=Counters)


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

    def history(self, name: str) -> UnitHistory: ...

    def subscribe_events(self) -> MemoryObjectReceiveStream[Event | ModelEvent | ToolsEvent]: ...

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

    def http_views(self) -> Sequence[str]:
        """What the read-only `http` port serves now (`[supervise] http_serve`)."""
        ...

    def shutdown_reason(self) -> str:
        """Why the stack is stopping ("it received SIGTERM"); "" while it runs."""
        ...

    async def until_shutdown(self) -> None:
        """Return once the stack has begun to stop."""
        ...
