"""Processes × models → units, the dependency graph, and each unit's rendering. Pure.

A unit's *rendering* (argv, environment, cwd, port, probe) is a frozen value: the runtime
restarts a unit exactly when its rendering changes, so everything that reaches the
process must be in it and nothing else may be.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from supervisor.config.interpolate import interpolate
from supervisor.config.load import LoadedStack
from supervisor.config.spec import (
    Condition,
    Liveness,
    Probe,
    Process,
)
from supervisor.errors import (
    MissingModelKey,
    Problem,
    UnresolvedReference,
)

# Variables the supervisor sets itself; an inherited copy (a supervisor inside a unit)
# must never leak into units as if it were theirs.
OWN_VARIABLES = frozenset(
    {
        "SUPERVISE_UNIT",
        "SUPERVISE_MODEL",
        "SUPERVISE_ENV",
        "SUPERVISE_SOCKET",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    }
)


@dataclass(frozen=True)
class Unit:
    """One instance of a process: `MODEL/PROCESS` for per-model ones, else `PROCESS`."""

    name: str
    process: str
    model: str | None
    spec: Process
    # (unit name, condition) for every dependency, already resolved to unit names.
    depends_on: tuple[tuple[str, Condition], ...]


def unit_name(process: str, model: str | None) -> str:
    return process if model is None else f"{model}/{process}"


def check_processes(processes: Mapping[str, Process], file: str) -> list[Problem]:
    """Rules across processes: dependency names, direction, and cycles (with their path)."""
    problems: list[Problem] = []
    for name, process in processes.items():
        for dep, condition in process.depends_on.items():
            where = f"processes.{name}.depends_on.{dep}"
            other = processes.get(dep)
            if other is None:
                problems.append(Problem(file, where, f"unknown process {dep!r}"))
            elif dep == name:
                problems.append(Problem(file, where, "a process cannot depend on itself"))
            elif other.per_model and not process.per_model:
                problems.append(
                    Problem(
                        file,
                        where,
                        f"global process {name!r} cannot depend on per-model process {dep!r}",
                    )
                )
            elif condition == "completed" and not other.oneshot:
                problems.append(
                    Problem(file, where, f"'completed' needs a oneshot; {dep!r} is a service")
                )
            elif condition == "ready" and other.oneshot:
                problems.append(
                    Problem(file, where, f"a oneshot is never 'ready'; use 'completed' for {dep!r}")
                )
        if process.inject and not process.per_model:
            problems.append(
                Problem(
                    file, f"processes.{name}.inject", "only per-model processes inject model keys"
                )
            )
        probe = process.ready
        if probe is not None and probe.tcp and process.port is None and "${port}" in probe.tcp:
            problems.append(
                Problem(
                    file, f"processes.{name}.ready.tcp", "uses ${port} but the process has no port"
                )
            )
    cycle = find_cycle({n: list(p.depends_on) for n, p in processes.items()})
    if cycle:
        problems.append(
            Problem(
                file, f"processes.{cycle[0]}.depends_on", "dependency cycle: " + " -> ".join(cycle)
            )
        )
    return problems


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a path that ends where it starts, or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in color:
                continue
            if color[nxt] == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if color[nxt] == white and (found := visit(nxt)):
                return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(graph):
        if color[node] == white and (found := visit(node)):
            return found
    return None


def expand(processes: Mapping[str, Process], models: Iterable[str]) -> dict[str, Unit]:
    """All units, in a start order that respects every dependency (checked acyclic)."""
    model_list = list(models)
    units: dict[str, Unit] = {}
    for pname in topological(processes):
        process = processes[pname]
        for model in model_list if process.per_model else [None]:
            deps = tuple(
                (unit_name(dep, model if processes[dep].per_model else None), condition)
                for dep, condition in process.depends_on.items()
            )
            name = unit_name(pname, model)
            units[name] = Unit(name, pname, model, process, deps)
    return units


def select(processes: Mapping[str, Process], names: Iterable[str]) -> dict[str, Process]:
    """`names` and everything they depend on, in file order.

    Raises:
        KeyError: a name that is not a process of the stack.
    """
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in processes:
            raise KeyError(name)
        if name not in wanted:
            wanted.add(name)
            todo.extend(d for d in processes[name].depends_on if d in processes)
    return {n: p for n, p in processes.items() if n in wanted}


def topological(processes: Mapping[str, Process]) -> list[str]:
    """Process names, dependencies first, ties in file order."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in processes[name].depends_on:
            if dep in processes:
                visit(dep)
        done.append(name)

    for name in processes:
        visit(name)
    return done


def levels(units: Mapping[str, Unit]) -> dict[str, int]:
    """Depth in the dependency graph: 0 for units with no dependencies. Stopping goes
    from the deepest level up, starting from 0 down."""
    depth: dict[str, int] = {}
    for name, unit in units.items():  # already in dependency order
        depth[name] = 1 + max((depth.get(dep, 0) for dep, _ in unit.depends_on), default=-1)
    return depth


@dataclass(frozen=True)
class RenderedProbe:
    kind: Literal["tcp", "http", "exec", "log", "notify", "mcp"]
    target: tuple[str, ...]
    interval: float
    timeout: float
    within: float


@dataclass(frozen=True)
class RenderedLive:
    """A liveness probe: `probe.within` is unused (liveness has no deadline, only a
    count of consecutive failures)."""

    probe: RenderedProbe
    failures: int


@dataclass(frozen=True)
class Rendering:
    """Everything that reaches a unit's process; equal renderings need no restart."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    port: int | None
    probe: RenderedProbe | None
    injected: tuple[str, ...] = field(default=())
    live: RenderedLive | None = None

    @property
    def environ(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class RenderContext:
    """What a rendering reads besides the unit itself."""

    base_dir: str
    env_files: Mapping[str, str]
    environ: Mapping[str, str]
    stack_env: Mapping[str, str]
    processes: Mapping[str, Process]
    model_keys: Mapping[str, Mapping[str, str]]
    ports: Mapping[str, int]
    # SUPERVISE_* and NOTIFY_SOCKET per unit, set by the runtime.
    unit_variables: Mapping[str, Mapping[str, str]]

    @classmethod
    def of(
        cls,
        loaded: LoadedStack,
        *,
        model_keys: Mapping[str, Mapping[str, str]],
        ports: Mapping[str, int],
        unit_variables: Mapping[str, Mapping[str, str]] | None = None,
    ) -> RenderContext:
        """The one way a context is built from a loaded stack (check and runtime)."""
        return cls(
            base_dir=str(loaded.base_dir),
            env_files=loaded.env_files,
            environ=loaded.environ,
            stack_env=loaded.stack.env,
            processes=loaded.stack.processes,
            model_keys=model_keys,
            ports=ports,
            unit_variables=unit_variables or {},
        )


def render(unit: Unit, ctx: RenderContext) -> Rendering:
    """Render a unit for exec.

    Raises:
        MissingModelKey: a model key it needs has no value yet (the unit waits).
        UnresolvedReference: a reference that can never resolve (a config error).
    """
    variables = {**ctx.env_files, **ctx.environ}
    keys = ctx.model_keys.get(unit.model, {}) if unit.model is not None else {}

    def resolver(field_name: str) -> Callable[[str], str | None]:
        def resolve(name: str) -> str | None:
            if name == "model" and unit.model is not None:
                return unit.model
            if name.startswith("model.") and unit.model is not None:
                key = name.removeprefix("model.")
                if key not in keys:
                    raise MissingModelKey(unit.model, key)
                return keys[key]
            if name == "port":
                port = ctx.ports.get(unit.name)
                if port is None:
                    raise UnresolvedReference(unit.name, field_name, name)
                return str(port)
            if name.endswith(".port"):
                other = name.removesuffix(".port")
                process = ctx.processes.get(other)
                if process is None:
                    raise UnresolvedReference(unit.name, field_name, name)
                sibling = unit_name(other, unit.model if process.per_model else None)
                port = ctx.ports.get(sibling)
                if port is None:
                    raise UnresolvedReference(unit.name, field_name, name)
                return str(port)
            return variables.get(name)

        return resolve

    def text(field_name: str, template: str) -> str:
        try:
            return interpolate(template, resolver(field_name))
        except KeyError as exc:
            raise UnresolvedReference(unit.name, field_name, str(exc.args[0])) from None

    spec = unit.spec
    if isinstance(spec.command, list):
        argv = tuple(text("command", word) for word in spec.command)
    elif spec.shell:
        argv = ("/bin/sh", "-c", text("command", spec.command))
    else:
        argv = tuple(text("command", word) for word in shlex.split(spec.command))

    env = {k: v for k, v in ctx.env_files.items() if k not in OWN_VARIABLES}
    env.update((k, v) for k, v in ctx.environ.items() if k not in OWN_VARIABLES)
    env.update((k, text(f"env.{k}", v)) for k, v in ctx.stack_env.items())
    env.update((k, text(f"processes.{unit.process}.env.{k}", v)) for k, v in spec.env.items())
    env.update(ctx.unit_variables.get(unit.name, {}))
    port = ctx.ports.get(unit.name)
    if port is not None:
        env["PORT"] = str(port)
    for key in spec.inject:
        if unit.model is None or key not in keys:
            raise MissingModelKey(unit.model or "(global)", key)
        env[key] = keys[key]

    cwd = os.path.join(ctx.base_dir, text("cwd", spec.cwd)) if spec.cwd else ctx.base_dir
    probe = _render_probe(spec.ready, lambda field_name, t: text(f"ready.{field_name}", t))
    return Rendering(
        argv=argv,
        env=tuple(sorted(env.items())),
        cwd=os.path.normpath(cwd),
        port=port,
        probe=probe,
        injected=tuple(spec.inject),
        live=_render_live(spec.live, lambda field_name, t: text(f"live.{field_name}", t)),
    )


def _render_probe(probe: Probe | None, text: Callable[[str, str], str]) -> RenderedProbe | None:
    if probe is None:
        return None
    target = _probe_target(probe, text)
    return RenderedProbe(probe.kind, target, probe.interval, probe.timeout, probe.within)  # type: ignore[arg-type]


def _render_live(live: Liveness | None, text: Callable[[str, str], str]) -> RenderedLive | None:
    if live is None:
        return None
    target = _probe_target(live, text)
    probe = RenderedProbe(live.kind, target, live.interval, live.timeout, live.interval)  # type: ignore[arg-type]
    return RenderedLive(probe, live.failures)


def _probe_target(probe: Probe | Liveness, text: Callable[[str, str], str]) -> tuple[str, ...]:
    """What a ready or live probe checks, rendered: an exec probe's words, a log probe's
    pattern (never interpolated), a URL or address."""
    kind = probe.kind
    if kind == "exec":
        command = probe.exec or ""
        words = command if isinstance(command, list) else shlex.split(command)
        return tuple(text("exec", w) for w in words)
    if kind == "notify":
        return ()
    if kind == "log":
        return (probe.log or "",)
    return (text(kind, str(getattr(probe, kind))),)
