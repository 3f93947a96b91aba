"""Building the export plan: every unit of a validated stack rendered as `supervise run`
would render it, minus what must travel at exec time. Pure apart from reading the stack.

Invariants:
- Ports are concrete: fixed ones as written, `auto` ones numbered from `AUTO_PORT_BASE` in
  start order over *all* models, so a model's ports do not depend on `--model`, and no two
  units of the stack share one (systemd and Compose run them in one network namespace).
- A unit's `env` holds only what the stack file sets for it (`[env]`, its `env`, `PORT`,
  `SUPERVISE_UNIT`, `SUPERVISE_MODEL`); the exporter's own environment and env files are
  read for `${VAR}` but never copied.
- Injected keys are rendered into no unit (`inject` is emptied before rendering); each is
  sorted into static keys, hand-offs and unsourced keys (`supervisor.export.common`).
- Entries whose names look secret are referenced by name only; every secret value the
  export could leak is collected into the plan for `supervisor.export.leaks`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace

from supervisor.check import check_stack
from supervisor.config.load import LoadedStack, loading
from supervisor.config.spec import Process
from supervisor.errors import ConfigError, MissingModelKey
from supervisor.export.common import ExportPlan, ExportUnit, KeyLine, RuntimeOnlyReference
from supervisor.export.leaks import secret_values
from supervisor.plan import RenderContext, Unit, expand, render
from supervisor.secrets import is_secret

AUTO_PORT_BASE = 8001  # the first concrete port given to a `port = "auto"` unit
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


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
        secret_values=secret_values(loaded, rendered_secrets),
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
