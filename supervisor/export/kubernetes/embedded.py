"""Embedded mode: each model's Pod runs `supervise run --model M` itself; a stack without
models gets one Pod that runs `supervise run` for its global units. Pure.

Every supervise guarantee holds inside the Pod, because it *is* supervise: the start
gate, keys at exec time with the allowlist, exact restarts on a change, held sockets,
warm forks, the failure window, the control API (`kubectl exec ... supervise set`). The
kubelet sees one container, probed on the supervisor's /healthz (liveness) and /readyz
(readiness).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from supervisor.config.interpolate import interpolate, references
from supervisor.config.load import LoadedStack
from supervisor.export.common import ExportPlan
from supervisor.export.kubernetes.objects import (
    KubernetesOptions,
    deployment,
    labels,
    secret_name,
)
from supervisor.export.report import Report

HTTP_PORT = 8080  # where `supervise run` serves /healthz and /readyz in the Pod
PROBE_PERIOD = 5  # seconds between the kubelet's checks of /healthz and /readyz
PROBE_FAILURES = 3  # failed checks before the kubelet acts
STOP_MARGIN = 5  # seconds the kubelet adds to shutdown_timeout before SIGKILL


def embedded_deployment(
    loaded: LoadedStack,
    plan: ExportPlan,
    model: str | None,
    options: KubernetesOptions,
    prefix: str,
    env_secret: Mapping[str, str],
    report: Report,
) -> dict[str, object]:
    """The Deployment of one model run by supervise itself (None: a stack without
    models, whose global units it runs)."""
    stack_file = f"{options.workdir.rstrip('/')}/{loaded.file.name}"
    env, reachable = http_environment(loaded)
    if not reachable:
        report.add(
            "stack",
            "health probes",
            "lost",
            "[supervise] http does not listen on all interfaces at a port the export can "
            'set (e.g. "${HTTP_HOST:-127.0.0.1}:${PORT:-0}"): no probes generated',
        )
    container: dict[str, object] = {
        "name": "supervise",
        "image": options.image,
        "command": ["supervise", "run", "-c", stack_file, *(["--model", model] if model else [])],
        "workingDir": options.workdir,
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    if "" in env_secret:
        container["envFrom"] = [{"secretRef": {"name": env_secret[""]}}]
    if reachable:
        container["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
        for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            container[kind] = {
                "httpGet": {"path": path, "port": HTTP_PORT},
                "periodSeconds": PROBE_PERIOD,
                "failureThreshold": PROBE_FAILURES,
            }
    pod = {
        "terminationGracePeriodSeconds": math.ceil(plan.settings.shutdown_timeout) + STOP_MARGIN,
        "enableServiceLinks": False,
        "containers": [container],
    }
    watched = sorted(set(env_secret.values()))
    own = labels(prefix, model)
    return deployment(
        secret_name(prefix, model), options, own, plan.config_hash(model), pod, watched
    )


def http_environment(loaded: LoadedStack) -> tuple[dict[str, str], bool]:
    """Variables that make `[supervise] http` listen on 0.0.0.0:HTTP_PORT, and whether
    they do: a `*PORT*` reference gets HTTP_PORT, a `*HOST*` one 0.0.0.0."""
    template = loaded.stack.supervise.http
    if template is None:
        return {}, False
    env: dict[str, str] = {}
    for name, _ in references(template):
        if "PORT" in name.upper():
            env[name] = str(HTTP_PORT)
        elif "HOST" in name.upper():
            env[name] = "0.0.0.0"
    rendered = interpolate(template, lambda n: env.get(n, loaded.variables.get(n)))
    host, _, port = rendered.rpartition(":")
    return env, host in ("0.0.0.0", "") and port == str(HTTP_PORT)
