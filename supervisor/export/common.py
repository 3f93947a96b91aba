"""The target-neutral view of a stack for export: every unit rendered as `supervise run`
would render it, minus what must travel at exec time. Pure apart from reading the stack.

Invariants:
- Ports are concrete: fixed ones as written, `auto` ones numbered from `AUTO_PORT_BASE` in
  start order over *all* models, so a model's ports do not depend on `--model`, and no two
  units of the stack share one (systemd and Compose run them in one network namespace).
- A unit's `env` holds only what the stack file sets for it (`[env]`, its `env`, `PORT`,
  `SUPERVISE_UNIT`, `SUPERVISE_MODEL`); the exporter's own environment and env files are
  read for `${VAR}` but never copied.
- Injected keys are never rendered into a unit: each is a static key (the model's Secret
  or key file), a published key (a hand-off file of the publishing process), or has no
  source (reported, and left for the operator to fill in).
- Nothing secret is written: entries whose names look secret are referenced by name only,
  and `check_no_secrets` refuses output that contains a known secret value anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from supervisor.check import check_stack
from supervisor.config.interpolate import references
from supervisor.config.load import LoadedStack, loading
from supervisor.config.spec import Condition, Process, Settings
from supervisor.errors import ConfigError, MissingModelKey, SuperviseError
from supervisor.plan import RenderContext, RenderedProbe, Unit, expand, render
from supervisor.secrets import MIN_MASKED_LENGTH, is_secret

AUTO_PORT_BASE = 8001  # the first concrete port given to a `port = "auto"` unit
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


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


class SecretInOutput(ExportError):
    """A generated file would contain a secret's value (never written)."""

    def __init__(self, output: str, name: str) -> None:
        self.output, self.name = output, name
        super().__init__(
            f"{output} would contain the value of the secret {name}; reference it from a "
            "secret-looking env entry or an injected key instead of interpolating it"
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


def allocate_ports(units: Mapping[str, Unit]) -> dict[str, int]:
    """Concrete ports: fixed as written, `auto` numbered from AUTO_PORT_BASE, all distinct."""
    taken = {u.spec.port for u in units.values() if isinstance(u.spec.port, int)}
    ports: dict[str, int] = {}
    candidate = AUTO_PORT_BASE
    for name, unit in units.items():
        if isinstance(unit.spec.port, int):
            ports[name] = unit.spec.port
        elif unit.spec.port == "auto":
            while candidate in taken:
                candidate += 1
            ports[name] = candidate
            taken.add(candidate)
    return ports


def build_plan(
    loaded: LoadedStack,
    only_models: Iterable[str] = (),
    *,
    remote_globals: Mapping[str, str] | None = None,
) -> ExportPlan:
    """The export view of a validated stack.

    Args:
        loaded: the stack.
        only_models: export these models only (all when empty).
        remote_globals: global process → the host name per-model units reach it at (a
            Kubernetes Service); `127.0.0.1:${P.port}` in their templates is rewritten.

    Raises:
        ConfigError: anything `supervise check` would refuse, including an unknown model.
        RuntimeOnlyReference: a template needs a published key's value.
    """
    only = list(only_models)
    with loading(str(loaded.file), "checking the plan"):
        report = check_stack(loaded, only)
    if report.problems:
        raise ConfigError(report.problems)
    stack = loaded.stack
    processes = stack.processes
    ports = allocate_ports(expand(processes, stack.models))
    models = tuple(m for m in stack.models if not only or m in only)
    publishers: dict[str, list[str]] = {}
    for pname, spec in processes.items():
        if spec.per_model:
            for key in spec.publishes:
                publishers.setdefault(key, []).append(pname)
    remote = dict(remote_globals or {})
    notes: list[tuple[str, str]] = []
    static: dict[str, dict[str, str]] = {m: {} for m in models}
    units: dict[str, ExportUnit] = {}
    rendered_secrets: list[tuple[str, str]] = []
    for unit in expand(processes, models).values():
        spec, stack_env = unit.spec, dict(stack.env)
        if unit.model is not None and remote:
            spec, stack_env, found = _point_at_services(spec, stack_env, remote)
            notes.extend((unit.process, note) for note in found)
        variables = {"SUPERVISE_UNIT": unit.name}
        if unit.model is not None:
            variables["SUPERVISE_MODEL"] = unit.model
        context = RenderContext(
            base_dir=str(loaded.base_dir),
            env_files=loaded.env_files,
            environ=loaded.environ,
            stack_env=stack_env,
            processes=processes,
            model_keys={m: dict(stack.models[m]) for m in models},
            ports=ports,
            unit_variables={unit.name: variables},
        )
        try:
            rendering = render(replace(unit, spec=replace(spec, inject=[])), context)
        except MissingModelKey as exc:
            raise RuntimeOnlyReference(loaded.file, unit.name, exc.key) from exc
        written = set(stack_env) | set(spec.env) | {"PORT", *variables}
        env = tuple((k, v) for k, v in rendering.env if k in written and not is_secret(k))
        rendered_secrets += [(k, v) for k, v in rendering.env if k in written and is_secret(k)]
        model_keys = stack.models.get(unit.model, {}) if unit.model is not None else {}
        static_keys = tuple(k for k in spec.inject if k in model_keys)
        for key in static_keys:
            static[unit.model or ""][key] = model_keys[key]
        handoffs: list[str] = []
        for key in spec.inject:
            for publisher in publishers.get(key, []):
                if publisher != unit.process and publisher not in handoffs:
                    handoffs.append(publisher)
        units[unit.name] = ExportUnit(
            name=unit.name,
            process=unit.process,
            model=unit.model,
            spec=unit.spec,
            argv=rendering.argv,
            env=env,
            secret_env=tuple(
                sorted(k for k in written if is_secret(k) and k in dict(rendering.env))
            ),
            port=rendering.port,
            probe=rendering.probe,
            cwd=_relative_cwd(rendering.cwd, str(loaded.base_dir)),
            depends_on=unit.depends_on,
            inject=tuple(spec.inject),
            static_keys=static_keys,
            handoffs=tuple(handoffs),
            unsourced=tuple(k for k in spec.inject if k not in model_keys and k not in publishers),
        )
    return ExportPlan(
        file=loaded.file,
        settings=stack.supervise,
        models=models,
        units=units,
        static=static,
        env_scopes=_env_scopes(loaded),
        secret_values=_secret_values(loaded, rendered_secrets),
        notes=tuple(dict.fromkeys(notes)),
    )


def _relative_cwd(cwd: str, base_dir: str) -> str:
    relative = os.path.relpath(cwd, base_dir)
    return cwd if relative.startswith("..") else relative


def _point_at_services(
    spec: Process, stack_env: dict[str, str], remote: Mapping[str, str]
) -> tuple[Process, dict[str, str], list[str]]:
    """Templates with `127.0.0.1:${P.port}` of a remote global P pointed at its host."""
    found: list[str] = []

    def rewrite(where: str, template: str) -> str:
        for process, host in remote.items():
            reference = f"${{{process}.port}}"
            if reference not in template:
                continue
            before = template
            for loopback in LOOPBACK_HOSTS:
                template = template.replace(f"{loopback}:{reference}", f"{host}:{reference}")
            if template != before:
                found.append(f"{where}: {process} is reached at {host} instead of 127.0.0.1")
            if template.replace(f"{host}:{reference}", "").count(reference):
                found.append(
                    f"{where}: uses {reference} without a loopback host; {process} runs "
                    f"elsewhere, at {host}"
                )
        return template

    command = spec.command
    if isinstance(command, str):
        command = rewrite("command", command)
    else:
        command = [rewrite("command", word) for word in command]
    env = {k: rewrite(f"env.{k}", v) for k, v in spec.env.items()}
    shared = {k: rewrite(f"[env] {k}", v) for k, v in stack_env.items()}
    return replace(spec, command=command, env=env), shared, found


def _env_scopes(loaded: LoadedStack) -> dict[str, tuple[KeyLine, ...]]:
    """Environment the stack gives units besides its own tables: env-file keys and
    secret-looking entries, stack-wide ("") or per process."""
    scopes: dict[str, tuple[KeyLine, ...]] = {}
    shared = [
        KeyLine(k, None if is_secret(k) else v, "secret: fill in" if is_secret(k) else "env file")
        for k, v in loaded.env_files.items()
    ]
    shared += [
        KeyLine(k, None, "secret [env] entry: fill in")
        for k in loaded.stack.env
        if is_secret(k) and k not in loaded.env_files
    ]
    if shared:
        scopes[""] = tuple(shared)
    for pname, spec in loaded.stack.processes.items():
        own = [
            KeyLine(k, None, f"secret env of {pname}: fill in") for k in spec.env if is_secret(k)
        ]
        if own:
            scopes[pname] = tuple(own)
    return scopes


def _secret_values(
    loaded: LoadedStack, rendered: list[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Every secret the export could leak, as (name, value): env-file and referenced
    environment variables with secret names, rendered secret entries, secret model keys."""
    referenced: set[str] = set()
    stack = loaded.stack
    templates = list(stack.env.values())
    for spec in stack.processes.values():
        templates += [spec.command] if isinstance(spec.command, str) else list(spec.command)
        templates += list(spec.env.values())
    for template in templates:
        referenced.update(name for name, _ in references(template))
    pairs = [(k, v) for k, v in loaded.env_files.items() if is_secret(k)]
    pairs += [(k, v) for k, v in loaded.environ.items() if k in referenced and is_secret(k)]
    pairs += rendered
    for keys in stack.models.values():
        pairs += [(k, v) for k, v in keys.items() if is_secret(k)]
    found = {v: k for k, v in pairs if len(v) >= MIN_MASKED_LENGTH}
    return tuple(sorted(((k, v) for v, k in found.items()), key=lambda p: (-len(p[1]), p)))


def check_no_secrets(outputs: Mapping[str, str], plan: ExportPlan) -> None:
    """Raises SecretInOutput if any generated text contains a known secret value."""
    for output, text in outputs.items():
        for name, value in plan.secret_values:
            if value in text:
                raise SecretInOutput(output, name)


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
