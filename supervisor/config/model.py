"""The stack file as pydantic models: the declarative shape, defaults and per-field rules.

Unknown keys are errors everywhere (`extra="forbid"`) and every table is strict
(`model_fields.StrictModel`): nothing is coerced silently except numbers given where an
environment value (a string) is expected. Rules that need more
than one table (dependency names, cycles) live in `supervisor.plan`. A validated stack
is handed on as the plain values of `supervisor.config.spec` (`to_spec`): only this
module, its parts and the loader import pydantic.

Its parts: the strict base and shared field types are `supervisor.config.model_fields`,
the `ready` and `live` probe tables `supervisor.config.model_probes`; this module holds
the process, settings and stack tables and their hand-off as plain values.
"""

from __future__ import annotations

import signal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from supervisor.config import spec
from supervisor.config.interpolate import TemplateSyntaxError, references
from supervisor.config.model_fields import ByteSize, EnvKey, EnvValue, StrictModel
from supervisor.config.model_probes import LivenessModel, ProbeModel
from supervisor.config.spec import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_COALESCE,
    DEFAULT_CONTROL_SOCKET,
    DEFAULT_FAILURE_WINDOW,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_LINES,
    DEFAULT_LOG_MAX_SIZE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_FAILURES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_START_SECONDS,
    DEFAULT_STOP_TIMEOUT,
    HTTP_VIEWS,
    NAME_RULE,
    Condition,
    HttpView,
    is_process_name,
    is_safe_name,
    port_number,
    split_command,
    validate_key,
)
from supervisor.errors import AtKey, InvalidValue

# Probes that ask the unit's port: with `overlap`, that is the held socket both instances
# accept on, so the old instance would answer for the new one. `log` and `notify` come
# from the new process itself; `exec` is the user's command (README: Held listening
# sockets); no probe at all is the new process's own survival of `start_seconds`.
_SHARED_PROBES = ("tcp", "http", "mcp")


class ProcessModel(StrictModel):
    """One `[processes.NAME]` table."""

    command: str | list[str]
    per_model: bool = False
    oneshot: bool = False
    port: Literal["auto"] | Annotated[int, Field(ge=1, le=65535)] | None = None
    inject: list[EnvKey] = []
    publishes: list[EnvKey] = []
    depends_on: dict[str, Condition] = {}
    ready: ProbeModel | None = None
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    env: dict[EnvKey, EnvValue] = {}
    cwd: str | None = None
    stop_signal: str = "SIGTERM"
    stop_timeout: float = Field(DEFAULT_STOP_TIMEOUT, ge=0)
    start_seconds: float = Field(DEFAULT_START_SECONDS, ge=0)
    required: bool = True
    shell: bool = False
    # Hold the listening socket in the supervisor and pass it down (systemd's LISTEN_FDS),
    # so clients queue in the backlog across restarts instead of being refused.
    socket: bool = False
    # With `socket = true`: a restart starts the new instance on the held socket first and
    # stops the old one once the new one is ready, so no moment goes without a server.
    overlap: bool = False
    # Fork from a warm interpreter that imported these modules already; the command must
    # be `python -m MODULE ...`.
    preload: list[str] = []
    max_failures: int = Field(DEFAULT_MAX_FAILURES, ge=0)
    failure_window: float = Field(DEFAULT_FAILURE_WINDOW, gt=0)
    backoff_initial: float = Field(DEFAULT_BACKOFF_INITIAL, ge=0)
    backoff_max: float = Field(DEFAULT_BACKOFF_MAX, ge=0)
    # Runs once the unit is ready; consecutive failures restart it.
    live: LivenessModel | None = None
    # Its output's log file: false for none, a path (relative to `log_dir`, else to the
    # stack file; `${model}` is the model's name), or unset for `log_dir`'s default.
    log: Literal[False] | str | None = None

    @model_validator(mode="after")
    def _live_rules(self) -> ProcessModel:
        if self.oneshot and self.live is not None:
            raise ValueError("a oneshot completes; it takes no live probe")
        return self

    @model_validator(mode="after")
    def _log_path(self) -> ProcessModel:
        if not isinstance(self.log, str):
            return self
        if not self.log.strip():
            raise ValueError("log path is empty (use `log = false` for no log file)")
        allowed = {"model", "process"} if self.per_model else {"process"}
        try:
            names = [name for name, _ in references(self.log)]
        except TemplateSyntaxError as exc:
            raise ValueError(f"log: {exc}") from exc
        for name in names:
            if name not in allowed:
                raise ValueError(
                    f"log: ${{{name}}} cannot be used in a log path; "
                    f"only {', '.join(f'${{{n}}}' for n in sorted(allowed))}"
                )
        return self

    @field_validator("command")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if (isinstance(value, str) and not value.strip()) or (
            isinstance(value, list) and not value
        ):
            raise ValueError("command is empty")
        if isinstance(value, str):
            split_command(value)
        return value

    @field_validator("stop_signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        name = value.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if not isinstance(getattr(signal, name, None), signal.Signals):
            raise ValueError(f"unknown signal {value!r}")
        return name

    @model_validator(mode="after")
    def _oneshot_rules(self) -> ProcessModel:
        if self.oneshot and self.ready is not None:
            raise ValueError("a oneshot completes; it takes no ready probe")
        if self.oneshot and self.restart == "always":
            raise ValueError(
                "a oneshot completes: restart = 'always' contradicts it; use 'on-failure' "
                "(the default: run again only if it fails) or 'never'"
            )
        if self.socket and self.port is None:
            raise ValueError('socket = true needs a port (a number or "auto")')
        if self.socket and self.oneshot:
            raise ValueError("a oneshot cannot hold a listening socket")
        if self.overlap and not self.socket:
            raise ValueError(
                "overlap = true needs socket = true: two instances can share a port only "
                "through the socket the supervisor holds"
            )
        if self.overlap and self.ready is not None and self.ready.kind in _SHARED_PROBES:
            kind = self.ready.kind
            raise ValueError(
                "overlap = true needs a readiness probe that only the new instance can "
                "pass (ready = { log = ... } or { notify = true }): "
                f"{'a' if kind == 'tcp' else 'an'} {kind} probe on the held socket is "
                "answered by the instance it replaces"
            )
        if self.preload:
            words = self.command if isinstance(self.command, list) else split_command(self.command)
            if self.shell or len(words) < 3 or words[1] != "-m":
                raise ValueError("preload needs a command of the form `python -m MODULE ...`")
        return self


class SettingsModel(StrictModel):
    """The `[supervise]` table."""

    shutdown_timeout: float = Field(DEFAULT_SHUTDOWN_TIMEOUT, gt=0)
    control_socket: str = DEFAULT_CONTROL_SOCKET
    http: str | None = None
    # What the `http` port serves (spec.HTTP_VIEWS); on a public port, ["health"] keeps
    # the status page, logs and metrics to the control socket.
    http_serve: list[HttpView] = Field(default_factory=lambda: list(HTTP_VIEWS))
    env_files: list[str] | None = None
    log_format: Literal["text", "json"] = "text"
    coalesce: float = Field(DEFAULT_COALESCE, ge=0)
    # A required per-model unit that fails: "stop-model" stops only its model (the
    # default; models are failure domains), "stop-stack" ends the whole run with exit 1.
    on_model_failure: Literal["stop-model", "stop-stack"] = "stop-model"
    # Connections open at once on the control socket (and, separately, the http port);
    # more are answered 503, so no client can use up the supervisor's descriptors.
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1, le=65536)
    # A connection that has not sent its whole request by then is answered 408, so a slow
    # or idle client cannot hold a slot for ever.
    request_timeout: float = Field(DEFAULT_REQUEST_TIMEOUT, gt=0, le=3600)
    # Recent output lines kept per unit (and of the supervisor's own) for `logs`.
    log_lines: int = Field(DEFAULT_LOG_LINES, ge=0, le=1_000_000)
    # Each unit's output to LOG_DIR/[MODEL/]PROCESS.log, the supervisor's own lines to
    # LOG_DIR/supervise.log (relative to the stack file); rotated by size.
    log_dir: str | None = None
    log_max_size: ByteSize = DEFAULT_LOG_MAX_SIZE
    log_backups: int = Field(DEFAULT_LOG_BACKUPS, ge=0)

    @field_validator("http_serve")
    @classmethod
    def _serves_health(cls, value: list[str]) -> list[str]:
        if "health" not in value:
            raise ValueError(
                'must include "health": /healthz and /readyz are what the port is for '
                "(the platform's health check)"
            )
        if "page" in value and "status" not in value:
            raise ValueError('"page" needs "status": the page reads /status')
        twice = sorted({v for v in value if value.count(v) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice")
        return value

    @field_validator("http")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or "${" in value:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or (port != "0" and port_number(port) is None):
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value


class StackModel(StrictModel):
    """A whole stack file."""

    supervise: SettingsModel = Field(default_factory=lambda: SettingsModel.model_validate({}))
    env: dict[EnvKey, EnvValue] = {}
    models: dict[str, dict[EnvKey, EnvValue]] = {}
    processes: dict[str, ProcessModel] = {}

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, keys in value.items():
            if not is_safe_name(name):
                raise AtKey((name,), f"model name {name!r} is invalid: {NAME_RULE}")
            for key, item in keys.items():
                try:
                    validate_key(key, item)
                except InvalidValue as exc:
                    raise AtKey((name, key), str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _own_log_file(self) -> StackModel:
        process = self.processes.get("supervise")
        if self.supervise.log_dir and process and not process.per_model and process.log is None:
            raise ValueError(
                "processes.supervise: its default log file would be the supervisor's own "
                "supervise.log; give it `log = PATH` (or `log = false`)"
            )
        return self

    @field_validator("processes")
    @classmethod
    def _process_names(cls, value: dict[str, ProcessModel]) -> dict[str, ProcessModel]:
        for name in value:
            if not is_process_name(name):
                raise AtKey(
                    (name,),
                    f"process name {name!r} is invalid: letters, digits, '_' or '-', "
                    "at most 64 characters",
                )
        return value


_SPECS: dict[type[BaseModel], type[Any]] = {
    ProbeModel: spec.Probe,
    LivenessModel: spec.Liveness,
    ProcessModel: spec.Process,
    SettingsModel: spec.Settings,
    StackModel: spec.Stack,
}


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        fields = {name: _plain(getattr(value, name)) for name in type(value).model_fields}
        return _SPECS[type(value)](**fields)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def to_spec(stack: StackModel) -> spec.Stack:
    """The validated stack as plain frozen values (`supervisor.config.spec`)."""
    plain = _plain(stack)
    assert isinstance(plain, spec.Stack)
    return plain


def process_spec(raw: dict[str, Any]) -> spec.Process:
    """One `[processes.NAME]` table, validated, as a plain value."""
    plain = _plain(ProcessModel.model_validate(raw))
    assert isinstance(plain, spec.Process)
    return plain
