"""`supervise check`: every problem of a stack before anything starts, and the plan in
words. Pure apart from reading the stack's files: ports marked "auto" are shown as such,
not allocated. `run`, `check` and `reload` all go through `load_checked`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from supervisor.config.load import (
    EVERYTHING,
    LoadedStack,
    Selection,
    load_stack,
    loading,
    settings_value,
)
from supervisor.config.procfile import renumber_ports
from supervisor.config.spec import port_number
from supervisor.errors import ConfigError, MissingModelKey, Problem, UnresolvedReference
from supervisor.plan import (
    RenderContext,
    Rendering,
    Unit,
    check_processes,
    expand,
    render,
    select,
)
from supervisor.secrets import redact

# Stands in for an auto port while checking; never shown.
_PLACEHOLDER_PORT = 1
MAX_MISSING_KEYS = 64  # keys one unit may wait for, each reported; more is a runaway


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    # Problems only where every unit shares one host (`run`, `check`, `reload`: see
    # `load_checked`); an export that gives each model its own pod may keep them.
    one_host: list[Problem] = field(default_factory=list)


def check_stack(loaded: LoadedStack, only_models: Iterable[str] = ()) -> CheckReport:
    """Check everything that can be checked without starting anything."""
    file = str(loaded.file)
    stack = loaded.stack
    result = CheckReport()
    result.problems.extend(check_processes(stack.processes, file))
    only = list(only_models)
    known = ", ".join(sorted(stack.models)) or "none"
    for name in only:
        if name not in stack.models:
            result.problems.append(
                Problem(file, "--model", f"unknown model {name!r}; the stack has {known}")
            )
    if result.problems:
        return result
    models = [m for m in stack.models if not only or m in only]
    units = expand(stack.processes, models)
    result.one_host.extend(_shared_ports(loaded, units))
    ports = {
        name: (_PLACEHOLDER_PORT if unit.spec.port == "auto" else unit.spec.port)
        for name, unit in units.items()
        if unit.spec.port is not None
    }
    context = RenderContext.of(
        loaded,
        model_keys={m: dict(stack.models[m]) for m in models},
        ports={k: v for k, v in ports.items() if v is not None},
    )
    publishers: dict[str, list[str]] = {}
    for pname, spec in stack.processes.items():
        for key in spec.publishes:
            publishers.setdefault(key, []).append(pname)
    for name, unit in units.items():
        # Keys a unit waits for are filled with placeholders one by one, so that every
        # missing key is reported and the rest of the rendering is still checked.
        assumed: dict[str, dict[str, str]] = {m: dict(stack.models[m]) for m in models}
        for _ in range(MAX_MISSING_KEYS):
            try:
                rendering = render(unit, replace(context, model_keys=assumed))
                result.warnings.extend(_runnable(name, unit, rendering))
                break
            except UnresolvedReference as exc:
                result.problems.append(Problem(file, f"processes.{unit.process}", str(exc)))
                break
            except MissingModelKey as exc:
                assumed.setdefault(exc.model, {})[exc.key] = "placeholder"
                if not publishers.get(exc.key):
                    result.warnings.append(
                        f"{name} needs {exc.model} {exc.key}, which no [models.{exc.model}] "
                        f"key provides and no process declares in `publishes`; it will wait "
                        f"for it (`supervise set {exc.model} {exc.key}=...`)"
                    )
    if not models:
        result.warnings.extend(
            f"{p} is per_model but the stack has no models: it has no units"
            for p, spec in stack.processes.items()
            if spec.per_model
        )
    result.lines = _describe(loaded, models, units)
    return result


def _shared_ports(loaded: LoadedStack, units: Mapping[str, Unit]) -> list[Problem]:
    """A fixed port given to more than one unit: two processes with the same `port`, or
    a per-model process with a fixed port and several models. Only the units' own
    `port` values count (a probe or `${OTHER.port}` naming another unit's port is how a
    port is shared); "auto" ports are allocated distinct."""
    owners: dict[int, list[Unit]] = {}
    for unit in units.values():
        if isinstance(unit.spec.port, int):
            owners.setdefault(unit.spec.port, []).append(unit)
    problems = []
    for port, members in owners.items():
        if len(members) < 2:
            continue
        processes = list(dict.fromkeys(u.process for u in members))
        names = [u.name for u in members]
        given = ", ".join(names[:-1]) + " and " + names[-1]
        if len(processes) == 1:  # one per-model process, expanded to several models
            hint = (
                'use port = "auto" (a free port for each unit, as ${port} and $PORT, '
                "that its model's units reach as ${" + processes[0] + ".port}), or run "
                "one model per supervisor (--model)"
            )
        else:
            hint = 'give each process its own port, or use port = "auto"'
        where = ["processes", processes[-1], "port"]
        problems.append(
            Problem(
                str(loaded.file),
                ".".join(where),
                f"port {port} is given to {given}; a port can belong to one unit: {hint}",
                _line(loaded, where),
            )
        )
    address = settings_value(loaded, "http") or ""
    own = port_number(address.rpartition(":")[2])
    for unit in owners.get(own, []) if own else []:
        where = ["processes", unit.process, "port"]
        problems.append(
            Problem(
                str(loaded.file),
                ".".join(where),
                f"port {own} is the supervisor's own health and status port "
                f"([supervise] http = {address!r}); give {unit.name} another port",
                _line(loaded, where),
            )
        )
    return problems


def _line(loaded: LoadedStack, parts: list[str]) -> int | None:
    """The line of a key in the stack file, where it can be read and found."""
    if loaded.is_procfile:
        return None
    from supervisor.config.explain import locate_line  # the check's alone (pydantic)

    try:
        text = loaded.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return locate_line(text, parts)


def _runnable(name: str, unit: Unit, rendering: Rendering) -> list[str]:
    """What will fail at start that can be seen now: no working directory, a command
    not found. Warnings, not errors: a build step may still create them."""
    warnings = []
    if not os.path.isdir(rendering.cwd):
        warnings.append(f"{name}: working directory {rendering.cwd!r} does not exist")
    program = rendering.argv[0] if rendering.argv else ""
    if program and not unit.spec.shell:
        if "/" in program:
            path = os.path.join(rendering.cwd, program)
            found = os.access(path, os.X_OK) and not os.path.isdir(path)
        else:
            found = _which(program, path=rendering.environ.get("PATH", os.defpath)) is not None
        if not found:
            warnings.append(f"{name}: command {program!r} is not found or not executable")
    return warnings


def load_checked(
    file: Path | None,
    environ: Mapping[str, str],
    selection: Selection = EVERYTHING,
    *,
    reloading: bool = False,
) -> tuple[LoadedStack, CheckReport]:
    """Load a stack, narrow it to `selection`, and check it in full.

    Args:
        reloading: unknown `--model` names are dropped, not problems (the file may have
            removed a model since the run began).

    Raises:
        ConfigError: with every problem found, by the loader or the check.
    """
    loaded = load_stack(file, environ, selection.env_files)
    if selection.processes:
        try:
            processes = select(loaded.stack.processes, selection.processes)
        except KeyError as exc:
            known = ", ".join(loaded.stack.processes) or "none"
            raise ConfigError(
                [
                    Problem(
                        str(loaded.file), "", f"no process {exc.args[0]!r}; the stack has {known}"
                    )
                ]
            ) from None
        if loaded.is_procfile:  # honcho numbers the ports of those it runs, as named
            named = {name: processes[name] for name in dict.fromkeys(selection.processes)}
            processes = renumber_ports(named, loaded.stack.processes)
        loaded = replace(loaded, stack=replace(loaded.stack, processes=processes))
    models = selection.models
    only = [m for m in models if not reloading or m in loaded.stack.models]
    with loading(str(loaded.file), "checking the plan"):
        report = check_stack(loaded, only)
    report.problems.extend(report.one_host)
    if report.problems:
        raise ConfigError(report.problems)
    return loaded, report


def _describe(loaded: LoadedStack, models: list[str], units: Mapping[str, Unit]) -> list[str]:
    stack = loaded.stack
    lines = [
        f"{loaded.file}: {len(models)} model(s), {len(stack.processes)} process(es), "
        f"{len(units)} unit(s)"
    ]
    groups: dict[str | None, list[Unit]] = {}
    for unit in units.values():
        groups.setdefault(unit.model, []).append(unit)
    for model, members in groups.items():
        title = "global" if model is None else f"model {model}"
        lines.append(f"{title}: start order " + " -> ".join(u.process for u in members))
        keys = stack.models.get(model, {}) if model is not None else {}
        for unit in members:
            spec = unit.spec
            words = ["oneshot" if spec.oneshot else "service"]
            if spec.port is not None:
                words.append(f"port {spec.port}")
            if unit.depends_on:
                words.append("after " + ", ".join(f"{d} {c}" for d, c in unit.depends_on))
            if spec.inject:
                shown = []
                for key in spec.inject:
                    value = keys.get(key)
                    publishers = [p for p, s in stack.processes.items() if key in s.publishes]
                    if value is not None:
                        shown.append(f"{key}={redact(key, value)}")
                    elif publishers:
                        shown.append(f"{key}=<published by {', '.join(publishers)}>")
                    else:
                        shown.append(f"{key}=<missing>")
                words.append("inject " + ", ".join(shown))
            if spec.ready is not None:
                words.append(f"ready by {spec.ready.kind}")
            if spec.live is not None:
                words.append(f"live by {spec.live.kind}")
            if not spec.required:
                words.append("not required")
            lines.append(f"  {unit.name}: " + "; ".join(words))
    return lines


def _which(program: str, path: str) -> str | None:
    import shutil  # the check's alone: never resident in a running supervisor

    return shutil.which(program, path=path)
