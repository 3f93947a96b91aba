"""`GET /metrics`: the stack in Prometheus's text exposition format (0.0.4), following its
naming conventions (a `supervise_` prefix, base units in the name, `_total` counters,
state sets as one 0/1 sample per state).

Invariants:
- Labels carry names only — unit, model, process, state, probe kind, versions — never a
  key's value: no secret can reach a label. The tool-list hash is a digest.
- Per-unit values are read from the same status documents `status --json` gives, so the
  two never disagree about a unit.
- `render` is pure: a view and documents in, text out.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from supervisor import __version__
from supervisor.control.plane import ControlPlane, StackView, UnitView
from supervisor.control.status import unit_document
from supervisor.osproc.usage import TreeUsage, process_table
from supervisor.state import ModelState, State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "supervise"


def metrics_text(plane: ControlPlane) -> str:
    """The metrics of the running stack (reads the process table for cpu and rss)."""
    view = plane.view()
    usage = TreeUsage(process_table())
    documents = [unit_document(u, plane.redactor, usage) for u in view.units]
    return render(view, documents, __version__, sys.version.split(maxsplit=1)[0])


@dataclass
class _Family:
    name: str
    kind: str  # gauge, counter, histogram
    help: str
    samples: list[tuple[str, Mapping[str, str], float]] = field(default_factory=list)

    def add(self, labels: Mapping[str, str], value: float, suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels, value))


def render(view: StackView, documents: Sequence[Mapping[str, Any]], build: str, python: str) -> str:
    """The exposition text for `view`; `documents` are its units' status documents, in
    the same order."""
    families: dict[str, _Family] = {}

    def family(name: str, kind: str, help_text: str) -> _Family:
        full = f"{PREFIX}_{name}"
        return families.setdefault(full, _Family(full, kind, help_text))

    counters = view.counters
    family("build_info", "gauge", "The supervisor's version, always 1.").add(
        {"version": build, "python": python}, 1
    )
    family("start_time_seconds", "gauge", "When the supervisor started (Unix time).").add(
        {}, counters.started
    )
    family("config_reloads_total", "counter", "Reloads of the stack file asked for.").add(
        {}, counters.reloads
    )
    family(
        "config_last_reload_successful",
        "gauge",
        "1 when the last reload took (or none was asked for), else 0.",
    ).add({}, int(counters.last_reload_ok))
    if counters.last_reload_at is not None:
        family(
            "config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the last reload that took was applied (Unix time).",
        ).add({}, counters.last_reload_at)
    _models(view, family)
    for unit, document in zip(view.units, documents, strict=True):
        _unit(unit, document, family)
    return "".join(_exposition(f) for f in families.values())


Family = Callable[[str, str, str], _Family]  # `render`'s factory: name, type, help


def _models(view: StackView, family: Family) -> None:
    states = family("model_state", "gauge", "The model's state: 1 for the state it is in, else 0.")
    sets = family(
        "model_sets_total",
        "counter",
        "Changes applied to the model (a set, a publish, a reload) that restarted units.",
    )
    duration = family(
        "model_last_set_duration_seconds",
        "gauge",
        "Seconds the model's last change took until its restarted units were ready again.",
    )
    counters = view.counters
    for model, status in view.models.items():
        for state in ModelState:
            states.add({"model": model, "state": str(state)}, int(status.state is state))
        sets.add({"model": model}, counters.changes.get(model, 0))
        if model in counters.last_change_seconds:
            duration.add({"model": model}, counters.last_change_seconds[model])


def _unit(unit: UnitView, document: Mapping[str, Any], family: Family) -> None:
    labels = {"unit": unit.name, "model": unit.model or "", "process": unit.process}
    states = family("unit_state", "gauge", "The unit's state: 1 for the state it is in, else 0.")
    for state in State:
        states.add({**labels, "state": str(state)}, int(unit.status.state is state))
    family("unit_ready", "gauge", "1 when the unit is running and its probe passed.").add(
        labels, int(bool(document["ready"]))
    )
    family("unit_restarts_total", "counter", "Instances started after the first.").add(
        labels, document["restarts"]
    )
    optional = (
        ("unit_last_exit_code", "gauge", "Exit code of its last instance (negative: signal).",
         "exit_code"),
        ("unit_uptime_seconds", "gauge", "Seconds its running instance has been up.", "uptime"),
        ("unit_cpu_seconds_total", "counter",
         "CPU seconds of its running instance's process tree.", "cpu"),
        ("unit_resident_memory_bytes", "gauge",
         "Resident memory of its running instance's process tree.", "rss"),
        ("unit_mcp_tools", "gauge", "MCP tools its server listed when it last became ready.",
         "tools"),
    )  # fmt: skip
    for name, kind, help_text, key in optional:
        created = family(name, kind, help_text)
        if document.get(key) is not None:
            created.add(labels, document[key])
    info = family("unit_mcp_tools_info", "gauge", "The hash of its MCP tool list, always 1.")
    if unit.tools is not None:
        info.add({**labels, "hash": unit.tools.digest}, 1)
    family(
        "unit_liveness_failures", "gauge", "Consecutive failed liveness attempts right now."
    ).add(labels, unit.live_failures)
    _probes(unit, labels, family)


def _probes(unit: UnitView, labels: Mapping[str, str], family: Family) -> None:
    histogram = family(
        "unit_probe_duration_seconds",
        "histogram",
        "Duration of its probe attempts that passed (ready: until ready; live: after).",
    )
    failures = family(
        "unit_probe_failures_total", "counter", "Its liveness attempts that did not pass."
    )
    for stats in unit.probes:
        probe_labels = {**labels, "probe": stats.probe, "kind": stats.kind}
        for bound, count in zip(stats.bounds, stats.cumulative, strict=True):
            histogram.add({**probe_labels, "le": _number(bound)}, count, "_bucket")
        histogram.add({**probe_labels, "le": "+Inf"}, stats.count, "_bucket")
        histogram.add(probe_labels, stats.total, "_sum")
        histogram.add(probe_labels, stats.count, "_count")
        if stats.probe == "live":
            failures.add(probe_labels, stats.failures)


def _exposition(family: _Family) -> str:
    lines = [
        f"# HELP {family.name} {_escape_help(family.help)}",
        f"# TYPE {family.name} {family.kind}",
    ]
    for name, labels, value in family.samples:
        lines.append(f"{name}{_labels(labels.items())} {_number(value)}")
    return "\n".join(lines) + "\n"


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
    return f"{{{text}}}" if text else ""


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
