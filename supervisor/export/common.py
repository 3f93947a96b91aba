"""The target-neutral view of a stack for export, as values every target reads: the plan
(`ExportPlan`, its `ExportUnit`s and key lines), the generated files (`OutputFile`, key
files), and the errors of an export. Pure: no I/O.

Invariants:
- An `ExportUnit` is rendered as `supervise run` would render it, minus what must travel
  at exec time; its `env` holds only values that may be written, `secret_env` the names
  whose values are referenced, never written.
- Injected keys are never rendered into a unit: each is a static key (the model's Secret
  or key file), a published key (a hand-off file of the publishing process), or has no
  source (`unsourced`; reported, and left for the operator to fill in).
- A key file never holds a secret-looking value: such keys are commented, to fill in.

`supervisor.export.build` makes the plan from a stack; `supervisor.export.leaks` refuses
output that would contain a secret's value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

from supervisor.config.spec import Condition, Process, Settings
from supervisor.errors import SuperviseError
from supervisor.plan import RenderedProbe
from supervisor.secrets import is_secret


class ExportError(SuperviseError):
    """A stack that can be run but not exported as it is."""


class RuntimeOnlyReference(ExportError):
    """A template needs a model key that exists only at run time (published)."""

    def __init__(self, file: Path, unit: str, key: str) -> None:
        self.file, self.unit, self.key = file, unit, key
        super().__init__(
            f"{file}: {unit} uses ${{model.{key}}}, which is published at run time and so "
            f"cannot be written into a generated file; inject {key} and read ${key} instead"
        )


@dataclass(frozen=True)
class ExportUnit:
    """One unit as every target needs it."""

    name: str
    process: str
    model: str | None
    spec: Process
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # values that may be written
    secret_env: tuple[str, ...]  # env names whose values are referenced, never written
    port: int | None
    probe: RenderedProbe | None
    cwd: str  # relative to the stack's directory ("." for the directory itself)
    depends_on: tuple[tuple[str, Condition], ...]
    inject: tuple[str, ...]
    static_keys: tuple[str, ...]  # injected keys the model's Secret / key file holds
    handoffs: tuple[str, ...]  # processes whose hand-off files hold keys it injects
    unsourced: tuple[str, ...]  # injected keys nothing provides

    @property
    def oneshot(self) -> bool:
        return self.spec.oneshot

    @property
    def reads_key_file(self) -> bool:
        """Whether the unit reads its model's key file: for static keys, and for keys
        nothing provides, which the operator fills in there."""
        return self.model is not None and bool(self.static_keys or self.unsourced)

    @property
    def slug(self) -> str:
        """The unit's name as one path component (`alpha/trade` → `alpha-trade`)."""
        return self.name.replace("/", "-")


@dataclass(frozen=True)
class KeyLine:
    """One line of a generated key file: a value to write, or a name to fill in."""

    key: str
    value: str | None  # None: secret or unknown, written as a comment
    note: str = ""


@dataclass(frozen=True)
class ExportPlan:
    file: Path
    settings: Settings
    models: tuple[str, ...]
    units: Mapping[str, ExportUnit]  # start order
    static: Mapping[str, Mapping[str, str]]  # model → injected static keys (values secret-aware)
    env_scopes: Mapping[str, tuple[KeyLine, ...]]  # "" = stack-wide, else a process name
    secret_values: tuple[tuple[str, str], ...] = ()  # (name, value), longest value first
    notes: tuple[tuple[str, str], ...] = field(default=())  # (process, what was rewritten)

    def units_of(self, model: str | None) -> list[ExportUnit]:
        return [u for u in self.units.values() if u.model == model]

    @property
    def global_units(self) -> list[ExportUnit]:
        return self.units_of(None)

    @property
    def per_model_processes(self) -> list[str]:
        seen: list[str] = []
        for unit in self.units.values():
            if unit.model is not None and unit.process not in seen:
                seen.append(unit.process)
        return seen

    def dependents(self, name: str) -> list[ExportUnit]:
        return [u for u in self.units.values() if any(d == name for d, _ in u.depends_on)]

    def key_lines(self, model: str) -> list[KeyLine]:
        """The model's key file: static injected keys, then keys nothing provides."""
        lines = [
            KeyLine(k, None if is_secret(k) else v, "secret: fill in" if is_secret(k) else "")
            for k, v in self.static.get(model, {}).items()
        ]
        missing: dict[str, list[str]] = {}
        for unit in self.units_of(model):
            for key in unit.unsourced:
                missing.setdefault(key, []).append(unit.process)
        for key, processes in missing.items():
            note = f"injected by {', '.join(processes)}; nothing in the stack provides it"
            lines.append(KeyLine(key, None, note))
        return lines

    def config_hash(self, model: str | None) -> str:
        """A digest of everything that shapes a model's units, without secret values."""
        keys = {k: v for k, v in self.static.get(model or "", {}).items() if not is_secret(k)}
        units = [
            {f.name: getattr(u, f.name) for f in fields(u) if f.name != "spec"}
            | {"spec": asdict(u.spec)}
            for u in self.units_of(model)
        ]
        text = json.dumps({"units": units, "keys": keys}, sort_keys=True, default=_plain)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def duration(seconds: float) -> str:
    """A time span as systemd and Compose both read it: whole seconds as `Ns`, anything
    finer in milliseconds."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


@dataclass(frozen=True)
class OutputFile:
    """One generated file; `private` ones (key files) are written with mode 0600."""

    text: str
    private: bool = False


FILL_IN = "=    <- "  # in a key file, between a commented key to fill in and its note


def key_file(title: str, lines: Iterable[KeyLine]) -> OutputFile:
    """A key file in the SUPERVISE_ENV dialect; names without a value are comments."""
    body = [
        f"# {title}",
        "# KEY=VALUE lines, no quoting (the SUPERVISE_ENV dialect). Generated by supervise export;",
        "# secret-looking values are never written: uncomment those lines and fill them in.",
    ]
    for line in lines:
        if line.value is None:
            body.append(f"# {line.key}{FILL_IN}{line.note or 'fill in'}")
        else:
            body.append(f"{line.key}={line.value}")
    return OutputFile("\n".join(body) + "\n", private=True)
