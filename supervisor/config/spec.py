"""The stack as plain frozen values: what the runtime, the plan and the exports read.

`supervisor.config.model` validates a stack file with pydantic and hands back these
values (`model.to_spec`), so that pydantic is needed only while a file is validated,
never by a running supervisor. Each class here has exactly the fields and defaults of
its model (tests/test_pure.py holds the two to each other). The name rules and the
checks that a running supervisor applies itself (`set`, the hand-off files) live here
too, for the same reason.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from supervisor.errors import InvalidValue
from supervisor.secrets import redact

# Model names, process names and signatures: what may safely become a path component.
NAME_RULE = "letters, digits, '.', '_' or '-', at most 64 characters, not '.' or '..'"
# Every name rule is a full match: `$` would also accept a trailing newline.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
ENV_KEY_RULE = "an environment variable name (letters, digits, '_', not starting with a digit)"
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
# Process names appear in `${OTHER.port}`, so no '.' and no '/'.
_PROCESS_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,5}")  # a port number; str.isdigit() would take '٥٠٠٠'
MAX_REGEX_LENGTH = 1024  # a `log` probe's pattern: a line matcher, not a program
MAX_REGEX_DEPTH = 32  # nested groups in it (deeper ones overflow the regex compiler)

# Defaults, each named once.
DEFAULT_SHUTDOWN_TIMEOUT = 25.0  # the whole graceful stop; Render allows 30 s
DEFAULT_STOP_TIMEOUT = 10.0  # one unit: stop signal → SIGKILL of what is left
DEFAULT_START_SECONDS = 1.0  # a unit without a probe is ready once it survived this long
DEFAULT_PROBE_INTERVAL = 0.05  # the longest pause between readiness attempts
DEFAULT_PROBE_TIMEOUT = 1.0  # one readiness attempt
DEFAULT_PROBE_WITHIN = 60.0  # not ready by then: a failed start
DEFAULT_MAX_FAILURES = 5  # more failures than this inside the window: the unit is failed
DEFAULT_FAILURE_WINDOW = 60.0
DEFAULT_BACKOFF_INITIAL = 0.5  # first restart delay, doubled per recent failure
DEFAULT_BACKOFF_MAX = 30.0
# Runtime-config changes of one model inside this window make one restart. 0: a change
# is applied at once, and those that come while its units are stopped join it.
DEFAULT_COALESCE = 0.0
DEFAULT_LOG_LINES = 2000  # per unit; a line is at most 16 KiB, most are far shorter
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds a client may take to send one request
DEFAULT_MAX_CONNECTIONS = 128  # per listening port; a unit may hold a few, agents one each
DEFAULT_LIVE_INTERVAL = 10.0  # between liveness attempts (Kubernetes' periodSeconds)
DEFAULT_LIVE_TIMEOUT = 2.0  # one liveness attempt
DEFAULT_LIVE_FAILURES = 3  # consecutive failed liveness attempts that restart a unit
DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024  # a log file is rotated before it grows past this
DEFAULT_LOG_BACKUPS = 5  # rotated log files kept beside the current one
DEFAULT_CONTROL_SOCKET = ".supervise/control.sock"
# What the read-only `http` port can serve: "health" (/healthz, /readyz), "status"
# (/status), "metrics" (/metrics), "page" (the status page at / with its /logs and /why).
HttpView = Literal["health", "status", "metrics", "page"]
HTTP_VIEWS: tuple[HttpView, ...] = ("health", "status", "metrics", "page")


def is_safe_name(value: str) -> bool:
    return bool(_SAFE_NAME.fullmatch(value)) and value not in {".", ".."}


def is_env_key(value: str) -> bool:
    return bool(_ENV_KEY.fullmatch(value))


def is_process_name(value: str) -> bool:
    return bool(_PROCESS_NAME.fullmatch(value))


def port_number(text: str) -> int | None:
    """`text` as a TCP port (1-65535), or None."""
    if not _DIGITS.fullmatch(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def split_command(command: str) -> list[str]:
    """Split like a shell would.

    Raises:
        ValueError: unbalanced quotes or a trailing escape, with shlex's reason.
    """
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot split {command!r} like a shell: {exc}") from None


def check_regex(pattern: str) -> None:
    """Raises ValueError for a pattern that is too long, nested too deep, or invalid."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(f"regular expression longer than {MAX_REGEX_LENGTH} characters")
    depth = deepest = 0
    escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_REGEX_DEPTH:
        raise ValueError(f"regular expression nested deeper than {MAX_REGEX_DEPTH} groups")
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    nested = _nested_repeat(pattern)
    if nested:
        raise ValueError(
            f"regular expression '{nested}' repeats a repetition: on a line that almost "
            "matches it can take exponential time, and it runs in the supervisor; make "
            "the inner part possessive (a++, \\w*+) or atomic ((?>...)), or drop a "
            "quantifier"
        )


def _nested_repeat(pattern: str) -> str:
    """`pattern` if it has an unbounded repeat (`*`, `+`, `{n,}`) of something that can
    match one text in several ways, as in `(a+)+`, `(\\w+\\s?)*`, `(x+x+)+`: all of the
    repeated body varies in length or may match nothing. Such a body makes the
    backtracking matcher try exponentially many splits of a line that fails. Possessive
    repeats and atomic groups never backtrack, so they are fine; so is a body with a
    fixed-width separator (`(\\d+\\.)+`). This catches the usual cause, not every slow
    pattern (`(.*,)*` passes). "" when there is none."""
    # re's own parser (private, but the one re.compile used a moment ago); a layout it
    # no longer has skips the check rather than refusing a pattern.
    try:
        from re import _constants as sre  # type: ignore[attr-defined]
        from re import _parser  # type: ignore[attr-defined]

        tree: Any = _parser.parse(pattern)
        return pattern if _has_nested_repeat(list(tree), sre, _parser, tree.state) else ""
    except Exception:
        return ""


def _has_nested_repeat(items: list[Any], sre: Any, parser: Any, state: Any) -> bool:
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[1] == sre.MAXREPEAT:
            body = list(av[2])
            while len(body) == 1 and body[0][0] is sre.SUBPATTERN:  # (group) of one item
                body = list(body[0][1][3])
            varying = separated = False
            for item in body:
                low, high = parser.SubPattern(state, [item]).getwidth()
                if item[0] in (sre.POSSESSIVE_REPEAT, sre.ATOMIC_GROUP) or high == low:
                    separated = separated or low > 0
                else:
                    varying = True
            if varying and not separated:
                return True
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            children = [av[2]]
        elif op is sre.SUBPATTERN:
            children = [av[3]]
        elif op is sre.ATOMIC_GROUP:
            children = [av]
        elif op is sre.BRANCH:
            children = list(av[1])
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            children = [av[1]]
        elif op is sre.GROUPREF_EXISTS:
            children = [part for part in av[1:] if part is not None]
        else:
            children = []
        if any(_has_nested_repeat(list(child), sre, parser, state) for child in children):
            return True
    return False


def validate_model(name: str, keys: Mapping[str, str]) -> None:
    """Raises InvalidValue for a bad model name, key or signature."""
    if not is_safe_name(name):
        raise InvalidValue("model name", name, NAME_RULE)
    for key, value in keys.items():
        validate_key(key, value)


MAX_VALUE_BYTES = 32 * 1024  # one runtime-config value; environments are not file stores


def validate_key_name(key: str) -> None:
    """Raises InvalidValue for a name no environment variable can have."""
    if not is_env_key(key):
        raise InvalidValue("key", key, ENV_KEY_RULE)


def validate_key(key: str, value: str) -> None:
    """Raises InvalidValue for a key or value no environment should carry."""
    validate_key_name(key)
    shown = redact(key, value)  # an error message must not echo a secret
    if "\0" in value:
        raise InvalidValue(f"value of {key}", shown, "contains a NUL byte")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidValue(
            f"value of {key}", shown[:40] + "…", f"longer than {MAX_VALUE_BYTES} bytes"
        )
    if key == "SIGNATURE" and not is_safe_name(value):
        raise InvalidValue("SIGNATURE", value, NAME_RULE)


PROBE_KINDS = ("tcp", "http", "exec", "log", "notify", "mcp")
Condition = Literal["started", "ready", "completed"]


@dataclass(frozen=True)
class _OneKind:
    """A probe's kinds: exactly one is set (the models check it)."""

    tcp: str | None = None
    http: str | None = None
    exec: str | list[str] | None = None
    log: str | None = None
    notify: bool | None = None
    mcp: str | None = None

    @property
    def kind(self) -> str:
        return next(k for k in PROBE_KINDS if getattr(self, k))


@dataclass(frozen=True)
class Probe(_OneKind):
    """How a unit proves it is ready."""

    interval: float = DEFAULT_PROBE_INTERVAL
    timeout: float = DEFAULT_PROBE_TIMEOUT
    within: float = DEFAULT_PROBE_WITHIN


@dataclass(frozen=True)
class Liveness(_OneKind):
    """How a ready unit keeps proving that it serves (`live = {...}`)."""

    interval: float = DEFAULT_LIVE_INTERVAL
    timeout: float = DEFAULT_LIVE_TIMEOUT
    failures: int = DEFAULT_LIVE_FAILURES


@dataclass(frozen=True)
class Process:
    """One `[processes.NAME]` table."""

    command: str | list[str]
    per_model: bool = False
    oneshot: bool = False
    port: Literal["auto"] | int | None = None
    inject: list[str] = field(default_factory=list)
    publishes: list[str] = field(default_factory=list)
    depends_on: dict[str, Condition] = field(default_factory=dict)
    ready: Probe | None = None
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stop_signal: str = "SIGTERM"
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    start_seconds: float = DEFAULT_START_SECONDS
    required: bool = True
    shell: bool = False
    socket: bool = False
    overlap: bool = False
    preload: list[str] = field(default_factory=list)
    max_failures: int = DEFAULT_MAX_FAILURES
    failure_window: float = DEFAULT_FAILURE_WINDOW
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    live: Liveness | None = None
    log: Literal[False] | str | None = None


@dataclass(frozen=True)
class Settings:
    """The `[supervise]` table."""

    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    control_socket: str = DEFAULT_CONTROL_SOCKET
    http: str | None = None
    http_serve: list[HttpView] = field(default_factory=lambda: list(HTTP_VIEWS))
    env_files: list[str] | None = None
    log_format: Literal["text", "json"] = "text"
    coalesce: float = DEFAULT_COALESCE
    on_model_failure: Literal["stop-model", "stop-stack"] = "stop-model"
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    log_lines: int = DEFAULT_LOG_LINES
    log_dir: str | None = None
    log_max_size: int = DEFAULT_LOG_MAX_SIZE
    log_backups: int = DEFAULT_LOG_BACKUPS


@dataclass(frozen=True)
class Stack:
    """A whole stack file."""

    supervise: Settings = field(default_factory=Settings)
    env: dict[str, str] = field(default_factory=dict)
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
