"""The probe tables of a process as pydantic models: `ready = {...}` (how a unit proves it
is ready) and `live = {...}` (how a ready unit keeps proving that it serves).

Invariants: a probe names exactly one kind (`spec.PROBE_KINDS`); URLs are plain http://
with well-formed `${...}`; a `log` pattern compiles; an `exec` string splits as a
command. Part of the validation, like `supervisor.config.model`: never imported by the
runtime, which reads `spec.Probe` and `spec.Liveness`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from supervisor.config.interpolate import TemplateSyntaxError, references, stand_in
from supervisor.config.model_fields import StrictModel, scalar_to_str
from supervisor.config.spec import (
    DEFAULT_LIVE_FAILURES,
    DEFAULT_LIVE_INTERVAL,
    DEFAULT_LIVE_TIMEOUT,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_PROBE_TIMEOUT,
    DEFAULT_PROBE_WITHIN,
    PROBE_KINDS,
    check_regex,
    split_command,
)


class ProbeModel(StrictModel):
    """How a unit proves it is ready; exactly one kind per probe."""

    tcp: Annotated[str, BeforeValidator(scalar_to_str)] | None = None
    http: str | None = None
    exec: str | list[str] | None = None
    log: str | None = None
    notify: bool | None = None
    mcp: str | None = None  # an MCP `initialize` + `tools/list` over streamable HTTP
    interval: float = Field(DEFAULT_PROBE_INTERVAL, gt=0)
    timeout: float = Field(DEFAULT_PROBE_TIMEOUT, gt=0)
    within: float = Field(DEFAULT_PROBE_WITHIN, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ProbeModel:
        _check_one_kind(self)
        return self

    @property
    def kind(self) -> str:
        """The probe's one kind (checked above)."""
        return next(k for k in PROBE_KINDS if getattr(self, k))

    @field_validator("http", "mcp")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("log")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            check_regex(value)
        return value

    @field_validator("exec")
    @classmethod
    def _exec_splits(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, str):
            split_command(value)
        return value


def _check_one_kind(probe: BaseModel) -> None:
    kinds = [k for k in PROBE_KINDS if getattr(probe, k)]
    if len(kinds) != 1:
        raise ValueError(
            f"a probe needs exactly one of {', '.join(PROBE_KINDS)}"
            + (f" (got {', '.join(kinds)})" if kinds else "")
        )


def _check_url(value: str | None) -> str | None:
    """An http:// URL (the probes speak plain HTTP to loopback), its `${...}` well formed."""
    if value is None:
        return value
    try:
        list(references(value))
    except TemplateSyntaxError as exc:
        raise ValueError(str(exc)) from exc
    if not value.startswith("http://"):
        raise ValueError(f"only http:// URLs are probed, got {value!r}")
    # Each `${...}` stands for a value that renders well (a port, a host) at this check.
    try:
        url = urlsplit(stand_in(value))
        url.port  # noqa: B018  (raises for a port out of range or not a number)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from None
    if not url.hostname:
        raise ValueError(f"{value!r} has no host")
    return value


class LivenessModel(StrictModel):
    """How a ready unit keeps proving that it serves (`live = {...}`, the Kubernetes
    livenessProbe): one probe kind, tried every `interval` once the unit is ready, each
    attempt bounded by `timeout`; `failures` consecutive failed attempts restart the unit
    (only it) with the reason "liveness: ...". `mcp` sends an MCP `ping`; `log` passes
    when a line matched since the previous attempt, `notify` when a `WATCHDOG=1` came."""

    tcp: Annotated[str, BeforeValidator(scalar_to_str)] | None = None
    http: str | None = None
    exec: str | list[str] | None = None
    log: str | None = None
    notify: bool | None = None
    mcp: str | None = None
    interval: float = Field(DEFAULT_LIVE_INTERVAL, gt=0)
    timeout: float = Field(DEFAULT_LIVE_TIMEOUT, gt=0)
    failures: int = Field(DEFAULT_LIVE_FAILURES, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> LivenessModel:
        _check_one_kind(self)
        return self

    @field_validator("log")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            check_regex(value)
        return value

    @field_validator("http", "mcp")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)
