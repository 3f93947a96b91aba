"""What a Kubernetes export cannot keep of supervise's guarantees, and why. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from supervisor.export.common import ExportPlan, ExportUnit
from supervisor.export.entrypoint import is_loopback
from supervisor.export.kubernetes.native import MIN_PERIOD
from supervisor.export.report import Report, report_container_losses


def report_native(plan: ExportPlan, report: Report, services: Mapping[str, str]) -> None:
    """What native mode cannot keep."""
    report.add(
        "stack",
        "control API",
        "lost",
        "no supervisor runs: `supervise set/launch/drop/restart` and the Python client find "
        "no SUPERVISE_SOCKET (a unit that changes its model's keys, like the reference "
        "agent's daily TODAY_DATE, needs --mode embedded)",
    )
    report.add(
        "stack",
        "restart granularity",
        "lost",
        "a config change rolls the model's whole Pod (pod-template hash; Reloader for "
        "Secret edits), not exactly the units whose rendering changed",
    )
    report.add(
        "every unit",
        "failure window",
        "lost",
        "max_failures / failure_window: the kubelet never gives up (CrashLoopBackOff)",
    )
    report.add(
        "every unit",
        "backoff",
        "degraded",
        "the kubelet's back-off (10 s doubling to 5 min) replaces backoff_initial/backoff_max",
    )
    report.add(
        "every unit",
        "exit 78",
        "lost",
        "a configuration exit (78) is restarted like any crash, not marked failed at once",
    )
    for process, note in plan.notes:
        report.add(process, "address of a global unit", "degraded", note)
    for unit in {u.process: u for u in plan.units.values()}.values():
        _report_unit(plan, unit, report, services)


def _report_unit(
    plan: ExportPlan, unit: ExportUnit, report: Report, services: Mapping[str, str]
) -> None:
    spec, name = unit.spec, unit.process
    report_container_losses(report, name, socket=spec.socket, preload=bool(spec.preload))
    if not spec.oneshot and spec.restart != "always":
        report.add(
            name,
            "restart",
            "degraded",
            f'restart = "{spec.restart}": the kubelet restarts it whatever its exit status',
        )
    if spec.oneshot and spec.restart == "never":
        report.add(
            name,
            "restart",
            "degraded",
            'restart = "never": a failed init container is retried by the kubelet',
        )
    if spec.stop_signal != "SIGTERM":
        report.add(name, "stop signal", "lost", f"{spec.stop_signal}: the kubelet sends SIGTERM")
    if not spec.required:
        report.add(
            name,
            "required = false",
            "degraded",
            "a failing container keeps its Pod from being ready",
        )
    if spec.publishes and not spec.oneshot:
        report.add(
            name,
            "publishes",
            "lost",
            "a service's keys are taken only under "
            "supervise run; only oneshots publish through the hand-off volume",
        )
    if unit.probe is None and not spec.oneshot and plan.dependents(unit.name):
        report.add(
            name,
            "ready",
            "degraded",
            f"no probe: ready once it runs (start_seconds "
            f"= {spec.start_seconds:g} is not waited for)",
        )
    if unit.probe is not None and unit.probe.interval < MIN_PERIOD:
        report.add(
            name,
            "probe interval",
            "degraded",
            f"{unit.probe.interval:g} s raised to the kubelet's {MIN_PERIOD} s",
        )
    if unit.model is None and name in services and unit.probe is not None:
        target = unit.probe.target[0] if unit.probe.target else ""
        host = urlsplit(target).hostname if "://" in target else target.rpartition(":")[0]
        if is_loopback(host or "127.0.0.1"):
            report.add(
                name,
                "service address",
                "degraded",
                f"other Pods reach it through "
                f"Service {services[name]}: it must listen on 0.0.0.0, but its probe "
                "targets 127.0.0.1",
            )
    for dep, _ in unit.depends_on:
        other = plan.units[dep]
        if other.model is None and unit.model is not None and other.port is None:
            report.add(
                name,
                f"depends on {other.process}",
                "lost",
                f"{other.process} runs in another Pod and has no port: nothing waits for it",
            )
    for key in unit.unsourced:
        report.add(
            name,
            f"key {key}",
            "degraded",
            "nothing in the stack provides it: the Pod waits until the model's Secret has it",
        )


def report_embedded(plan: ExportPlan, report: Report) -> None:
    """What embedded mode changes: only where keys come from and where globals run."""
    if not plan.models:
        return  # one Pod runs the whole stack, as `supervise run` would
    report.add(
        "stack",
        "model keys",
        "degraded",
        "keys come from the stack file in the image: change them with `kubectl exec ... "
        "supervise set` (exact restarts) or a new image; Secret edits (env files) roll the Pod",
    )
    if plan.global_units:
        report.add(
            "stack",
            "global units",
            "degraded",
            "each model's Pod runs its own copy of the global units",
        )
