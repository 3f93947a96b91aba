"""Native mode: one Pod per model (and one for the global units) that keeps the start
gate with Kubernetes' own means. Pure.

Container order is the stack's start order. Oneshots are regular init containers (each
runs to exit 0 before the next starts); services something in the Pod depends on are
native sidecars (`restartPolicy: Always` in `initContainers`, Kubernetes >= 1.29) whose
`startupProbe` is the unit's ready probe, so the next container starts only once they
are ready; the remaining services are the main containers (their probe is the
readinessProbe). A oneshot is never a main container (the kubelet would run it again
each time it exits): a Pod with no service left for `containers` gets a `hold`
container of the pause image, which does nothing and keeps the Pod — and its
sidecars — running once the oneshots are done. Before the first unit that depends on a
global unit comes an init container running `supervise wait` against that unit's
Service.

Invariants: a `startupProbe` only on sidecars; probes whose target is a loopback address
run as `supervise wait` in the Pod (the kubelet probes the Pod IP, which a server bound
to 127.0.0.1 never answers); static keys are `secretKeyRef`s, one per injected key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from supervisor.export.common import ExportPlan, ExportUnit
from supervisor.export.entrypoint import is_loopback, shim_argv
from supervisor.export.kubernetes.objects import (
    KubernetesOptions,
    deployment,
    labels,
    metadata,
    secret_name,
)
from supervisor.export.names import dns_label, free_label, port_name
from supervisor.plan import RenderedProbe

HANDOFF_DIR = "/run/supervise/handoff"  # the emptyDir of published keys and markers
HANDOFF_SIZE = "1Mi"  # a few keys per model, in memory
SHIM_PROBE_GRACE = 1  # seconds added to a probe run by `supervise wait`: its interpreter start
MIN_PERIOD = 1  # the kubelet's shortest probe period and timeout, in seconds
HOLD_IMAGE = "registry.k8s.io/pause:3.10"  # keeps a Pod of oneshots and sidecars running
HOLD_CONTAINER = "hold"  # its name, unless a process took it


def handoff_file(process: str) -> str:
    return f"{HANDOFF_DIR}/{process}.env"


def marker_file(process: str) -> str:
    return f"{HANDOFF_DIR}/{process}.ready"


def pod_deployment(
    plan: ExportPlan,
    model: str | None,
    options: KubernetesOptions,
    prefix: str,
    services: Mapping[str, str],
    env_secret: Mapping[str, str],
) -> dict[str, object]:
    """The Deployment of a model's units (None: the global units)."""
    units = plan.units_of(model)
    members = {u.name for u in units}
    sidecars = {
        u.name
        for u in units
        if not u.oneshot and any(d.name in members for d in plan.dependents(u.name))
    }
    init: list[dict[str, object]] = []
    main: list[dict[str, object]] = []
    waited: set[str] = set()
    taken = {dns_label(u.process) for u in units}  # generated containers yield to these
    for unit in units:
        for dep, condition in unit.depends_on:
            if dep not in members and dep not in waited and plan.units[dep].port is not None:
                waited.add(dep)  # a global without a port cannot be seen from here (reported)
                wait = _wait_container(plan.units[dep], condition, options, services, taken)
                taken.add(str(wait["name"]))
                init.append(wait)
        container = _container(unit, options, prefix, env_secret)
        if unit.oneshot:
            init.append(container)
        elif unit.name in sidecars:
            container["restartPolicy"] = "Always"
            if unit.probe is not None:
                container["startupProbe"] = probe(unit, unit.probe)
            init.append(container)
        else:
            if unit.probe is not None:
                container["readinessProbe"] = probe(unit, unit.probe)
            main.append(container)
    pod: dict[str, object] = {
        "terminationGracePeriodSeconds": _grace(plan, units),
        "enableServiceLinks": False,
    }
    if not main:  # oneshots and sidecars only: something must hold the Pod
        main.append({"name": free_label(HOLD_CONTAINER, taken), "image": HOLD_IMAGE})
    if init:
        pod["initContainers"] = init
    pod["containers"] = main
    if any(_uses_handoff(u) for u in units):
        volume = {"medium": "Memory", "sizeLimit": HANDOFF_SIZE}
        pod["volumes"] = [{"name": "handoff", "emptyDir": volume}]
    name = secret_name(prefix, model)
    watched = [name] if model is not None and plan.key_lines(model) else []
    watched += sorted(set(env_secret.values()))
    own = labels(prefix, model)
    return deployment(name, options, own, plan.config_hash(model), pod, watched)


def _uses_handoff(unit: ExportUnit) -> bool:
    publishes = unit.oneshot and unit.model is not None and bool(unit.spec.publishes)
    marker = unit.probe is not None and unit.probe.kind in ("log", "notify")
    return publishes or marker or bool(unit.handoffs)


def _grace(plan: ExportPlan, units: list[ExportUnit]) -> int:
    """The Pod's whole stop: the stack's shutdown_timeout, or a longer unit stop_timeout."""
    longest = max((u.spec.stop_timeout for u in units), default=0.0)
    return math.ceil(max(plan.settings.shutdown_timeout, longest))


def _container(
    unit: ExportUnit, options: KubernetesOptions, prefix: str, env_secret: Mapping[str, str]
) -> dict[str, object]:
    argv = shim_argv(unit, handoff=handoff_file, marker=marker_file(unit.process))
    container: dict[str, object] = {
        "name": dns_label(unit.process),
        "image": options.image,
        "command": argv,
        "workingDir": workdir(options.workdir, unit.cwd),
    }
    env: list[dict[str, object]] = [{"name": k, "value": v} for k, v in unit.env]
    secret = secret_name(prefix, unit.model)
    env += [_secret_ref(k, secret) for k in unit.static_keys + unit.unsourced]
    own = env_secret.get(unit.process)
    env += [_secret_ref(k, own) for k in unit.secret_env if own and k in unit.spec.env]
    container["env"] = env
    if "" in env_secret:
        container["envFrom"] = [{"secretRef": {"name": env_secret[""]}}]
    if unit.port is not None:
        port: dict[str, object] = {"containerPort": unit.port, "protocol": "TCP"}
        if (name := port_name(unit.process)) is not None:
            port = {"name": name, **port}
        container["ports"] = [port]
    if _uses_handoff(unit):
        container["volumeMounts"] = [{"name": "handoff", "mountPath": HANDOFF_DIR}]
    return container


def _secret_ref(key: str, secret: str) -> dict[str, object]:
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def workdir(root: str, cwd: str) -> str:
    """The container's working directory for a unit's cwd (relative to the stack's)."""
    if cwd.startswith("/"):
        return cwd
    return root if cwd == "." else f"{root.rstrip('/')}/{cwd}"


def _timing(rendered: RenderedProbe, shim: bool) -> dict[str, int]:
    period = max(MIN_PERIOD, math.ceil(rendered.interval))
    timeout = max(MIN_PERIOD, math.ceil(rendered.timeout)) + (SHIM_PROBE_GRACE if shim else 0)
    return {
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": max(1, math.ceil(rendered.within / period)),
    }


def probe(unit: ExportUnit, rendered: RenderedProbe) -> dict[str, object]:
    """A unit's ready probe as a Kubernetes probe (see the module docstring)."""
    target = rendered.target[0] if rendered.target else ""
    if rendered.kind == "tcp":
        host, _, port = target.rpartition(":")
        if not is_loopback(host or "127.0.0.1"):
            socket: dict[str, object] = {"port": int(port)}
            if host != "0.0.0.0":
                socket = {"host": host, **socket}
            return {"tcpSocket": socket, **_timing(rendered, False)}
        command = ["supervise", "wait", "--tcp", target, "--timeout", "0"]
    elif rendered.kind == "http":
        url = urlsplit(target)
        if not is_loopback(url.hostname or ""):
            get: dict[str, object] = {"path": url.path or "/", "port": url.port or 80}
            if url.hostname and url.hostname != "0.0.0.0":
                get = {"host": url.hostname, **get}
            return {"httpGet": get, **_timing(rendered, False)}
        command = ["supervise", "wait", "--http", target, "--timeout", "0"]
    elif rendered.kind == "mcp":  # no kubelet probe speaks MCP: the shim does, in the Pod
        command = ["supervise", "wait", "--mcp", target, "--timeout", "0"]
    elif rendered.kind == "exec":
        # The probe sees the unit's keys too; the hand-off files exist by then.
        bare = replace(unit, argv=rendered.target, handoffs=(), probe=None)
        command = shim_argv(bare, handoff=handoff_file)
        if command[:2] == ["supervise", "exec"]:
            files = [w for p in unit.handoffs for w in ("--env-file", handoff_file(p))]
            command = [*command[:2], *files, *command[2:]]
    else:
        command = ["supervise", "wait", "--file", marker_file(unit.process), "--timeout", "0"]
    return {"exec": {"command": command}, **_timing(rendered, True)}


def _wait_container(
    dep: ExportUnit,
    condition: str,
    options: KubernetesOptions,
    services: Mapping[str, str],
    taken: set[str],
) -> dict[str, object]:
    """An init container that waits for a global unit through its Service, named
    `wait-PROCESS` unless a container of the Pod has that name."""
    host = services.get(dep.process, dns_label(dep.process))
    rendered = dep.probe
    within = rendered.within if rendered is not None else 60.0
    if condition == "ready" and rendered is not None and rendered.kind in ("http", "mcp"):
        url = urlsplit(rendered.target[0])
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        what = [f"--{rendered.kind}", f"http://{host}:{dep.port or url.port or 80}{path}"]
    else:
        what = ["--tcp", f"{host}:{dep.port}"]
    return {
        "name": free_label(f"wait-{dep.process}", taken),
        "image": options.image,
        "command": ["supervise", "wait", *what, "--timeout", f"{within:g}"],
    }


def service(
    unit: ExportUnit, options: KubernetesOptions, prefix: str, name: str
) -> dict[str, object]:
    """The Service through which other Pods reach a global unit."""
    port: dict[str, object] = {"port": unit.port, "targetPort": unit.port, "protocol": "TCP"}
    if (named := port_name(unit.process)) is not None:
        port = {"name": named, **port}
    own = labels(prefix, None)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, options, own),
        "spec": {"selector": own, "ports": [port]},
    }
