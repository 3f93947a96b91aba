"""From trial records to figures: medians (min–max), ratios to the floor, the issue's
targets for supervise, and the tables (plain text for the terminal, Markdown for the
README). Pure: values in, values out."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

from scenarios import SIGTERM_DEADLINE

MIB = 1024 * 1024
BUSY_WARNING = 0.10  # share of all CPUs busy with other work that makes figures suspect
KIB = 1024

Trial = dict[str, Any]


def _get(record: Any, *path: str | int) -> Any:
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _changes(kind: str, field: str) -> Callable[[Trial], Any]:
    """`field` of every change of one kind in boot A ("restart" or "env_change"): a list
    from the several changes of a boot, or the one change of earlier results files."""

    def pull(trial: Trial) -> Any:
        many = _get(trial, "a", kind + "s")
        if isinstance(many, list):
            return [change.get(field) for change in many] or None
        return _get(trial, "a", kind, field)

    return pull


# metric name -> (label, unit, how to pull one value per trial; a list pools samples)
METRICS: dict[str, tuple[str, str, Callable[[Trial], Any]]] = {
    "cold_start": ("cold start → all ports accept", "s", lambda t: _get(t, "a", "cold_start_s")),
    "restart_answer": (
        "restart one → new instance answers",
        "s",
        _changes("restart", "answer_s"),
    ),
    "restart_cli": ("restart one: CLI returned", "s", _changes("restart", "cli_s")),
    "env_answer": (
        "env change → new value served",
        "s",
        _changes("env_change", "answer_s"),
    ),
    "env_cli": ("env change: CLI returned", "s", _changes("env_change", "cli_s")),
    "env_collateral": (
        "env change: other units restarted",
        "",
        _changes("env_change", "collateral"),
    ),
    "idle_cpu": (
        "idle CPU-s per 30 s (supervisor side)",
        "",
        lambda t: _get(t, "a", "idle_cpu_30s"),
    ),
    "rss": ("supervisor-side RSS", "MiB", lambda t: _scale(_get(t, "a", "rss"), MIB)),
    "uss": ("supervisor-side USS", "MiB", lambda t: _scale(_get(t, "a", "uss"), MIB)),
    "sigterm_gone": ("SIGTERM → all services gone", "s", lambda t: _get(t, "a", "sigterm_gone_s")),
    "sigterm_exit": ("SIGTERM → supervisor exited", "s", lambda t: _get(t, "a", "sigterm_exit_s")),
    "kill9_gone": (
        "kill -9 → services + grandchildren gone",
        "s",
        lambda t: _get(t, "b", "kill9_gone_s"),
    ),
    "status": (
        "status CLI latency",
        "ms",
        lambda t: [s * 1000 for s in (_get(t, "a", "status_s") or [])] or None,
    ),
}
BOOT_B = {"kill9_gone"}  # metrics of the kill -9 boot
RATIO_METRICS = ("cold_start", "restart_answer", "env_answer", "sigterm_gone")
# What a missing value means where it is not simply "no such mechanism".
TIMED_OUT = {
    "sigterm_gone": f"not within {SIGTERM_DEADLINE:g} s",
    "sigterm_exit": f"not within {SIGTERM_DEADLINE:g} s",
    "kill9_gone": "not gone",
}
# Figures that exist for a tool only if it has the mechanism at all.
FLAGS: dict[str, tuple[str, Callable[[Trial], Any]]] = {
    "restart_ready": (
        "restart one: new instance answered when CLI returned",
        _changes("restart", "ready_at_return"),
    ),
    "env_ready": (
        "env change: new value served when CLI returned",
        _changes("env_change", "ready_at_return"),
    ),
}


def _scale(value: Any, unit: int) -> float | None:
    return None if value is None else value / unit


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _values(trials: Iterable[Trial], pull: Callable[[Trial], Any]) -> list[float]:
    values: list[float] = []
    for trial in trials:
        value = pull(trial)
        if isinstance(value, list):
            values += [v for v in value if v is not None]
        elif value is not None:
            values.append(float(value))
    return values


def summarize(trials: list[Trial]) -> dict[str, Any]:
    """{tool: {n: {metric: {median, min, max, count, missing}}}} plus flags and ratios."""
    summary: dict[str, Any] = {}
    for tool in sorted({t["tool"] for t in trials}):
        summary[tool] = {}
        for n in sorted({t["n"] for t in trials if t["tool"] == tool}):
            mine = [t for t in trials if t["tool"] == tool and t["n"] == n]
            figures: dict[str, Any] = {"trials": len(mine)}
            for name, (_, _, pull) in METRICS.items():
                # The kill -9 boot is made in the first repeats only (--kill9-repeats).
                pool = [t for t in mine if "b" in t] if name in BOOT_B else mine
                values = _values(pool, pull)
                missing = sum(1 for t in pool for v in _listed(pull(t)) if v is None)
                figures[name] = (
                    {
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                        "count": len(values),
                        "missing": missing,
                    }
                    if values
                    else {"missing": missing}
                )
            for name, (_, pull) in FLAGS.items():
                flags = [f for t in mine for f in _listed(pull(t)) if f is not None]
                figures[name] = {"true": sum(1 for f in flags if f), "count": len(flags)}
            kill9_left = [_get(t, "b", "kill9_survivors") for t in mine]
            figures["kill9_left"] = [k for k in kill9_left if k is not None]
            sigterm_left = [_get(t, "a", "sigterm_survivors") for t in mine]
            figures["sigterm_left"] = [k for k in sigterm_left if k is not None]
            figures["helpers"] = sorted({h for t in mine for h in (_get(t, "a", "helpers") or [])})
            figures["errors"] = [
                e
                for t in mine
                for e in (_get(t, "a", "error"), _get(t, "b", "error"), t.get("error"))
                if e
            ]
            summary[tool][n] = figures
    floor = summary.get("floor", {})
    for by_n in summary.values():
        for n, figures in by_n.items():
            ratios = {}
            for name in RATIO_METRICS:
                base = _get(floor, n, name, "median") if n in floor else None
                value = _get(figures, name, "median")
                if base and value is not None:
                    ratios[name] = value / base
            figures["ratios"] = ratios
    return summary


def median(summary: dict[str, Any], tool: str, n: int, metric: str) -> float | None:
    value = _get(summary.get(tool, {}).get(n, {}), metric, "median")
    return None if value is None else float(value)


def targets(
    summary: dict[str, Any],
    ns: list[int],
    main_ns: list[int] | None = None,
    gap: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The issue's targets for supervise, each with the measured value and a verdict
    (True met, False missed, None not measured). Ratios are checked at every N in `ns`;
    the comparisons with other tools at the largest of `main_ns` (the N every tool ran)."""
    sv = summary.get("supervise", {})
    if not sv:
        return []
    big, small = max(main_ns or ns), min(ns)
    rows: list[dict[str, Any]] = []

    def add(what: str, value: str, ok: bool | None) -> None:
        rows.append({"target": what, "measured": value, "met": ok})

    def ratio(n: int, metric: str) -> float | None:
        value = _get(sv, n, "ratios", metric)
        return None if value is None else float(value)

    for metric, limit, what in (
        ("cold_start", 1.10, "cold start ≤ 1.10× floor"),
        ("restart_answer", 1.10, "restart one → answers ≤ 1.10× floor"),
        ("env_answer", 1.10, "env change → new value ≤ 1.10× floor"),
    ):
        values = {n: ratio(n, metric) for n in ns if n in sv}
        shown = ", ".join(
            f"N={n}: " + (f"{r:.2f}×" if r is not None else "n/a") for n, r in values.items()
        )
        known = [r for r in values.values() if r is not None]
        add(what + " (every N)", shown, all(r <= limit for r in known) if known else None)
    ready = [_get(sv, n, "restart_ready") for n in ns if n in sv]
    true, count = sum(r["true"] for r in ready if r), sum(r["count"] for r in ready if r)
    add(
        "restart CLI returns when the new instance is ready",
        f"{true}/{count} changes",
        true == count if count else None,
    )
    ready = [_get(sv, n, "env_ready") for n in ns if n in sv]
    true, count = sum(r["true"] for r in ready if r), sum(r["count"] for r in ready if r)
    add(
        "set CLI returns when the new value is served",
        f"{true}/{count} changes",
        true == count if count else None,
    )
    worst = [_get(sv, n, "env_collateral", "max") for n in ns if n in sv]
    worst_known = [w for w in worst if w is not None]
    add(
        "env change: 0 collateral restarts",
        f"max {max(worst_known):g}" if worst_known else "n/a",
        max(worst_known) == 0 if worst_known else None,
    )
    idle = median(summary, "supervise", big, "idle_cpu")
    add(
        f"idle N={big} ≤ 0.03 CPU-s/30 s",
        f"{idle:.4f}" if idle is not None else "n/a",
        idle <= 0.03 if idle is not None else None,
    )
    rss = median(summary, "supervise", big, "rss")
    theirs_rss = median(summary, "supervisord", big, "rss")
    if rss is None:
        shown = "n/a"
    elif theirs_rss is None:
        shown = f"{rss:.1f} MiB, supervisord not measured"
    else:
        shown = f"{rss:.1f} MiB vs supervisord {theirs_rss:.1f} MiB"
    add(
        f"memory N={big} below supervisord (RSS, supervisor side)",
        shown,
        rss < theirs_rss if rss is not None and theirs_rss is not None else None,
    )
    rss_small = median(summary, "supervise", small, "rss")
    if rss is not None and rss_small is not None and big > small:
        growth = (rss - rss_small) * MIB / KIB / (big - small)
        add(
            f"memory growth per unit ≤ 100 KiB (RSS, N={small}→{big})",
            f"{growth:.1f} KiB",
            growth <= 100,
        )
    uss = median(summary, "supervise", big, "uss")
    uss_small = median(summary, "supervise", small, "uss")
    if uss is not None and uss_small is not None and big > small:
        growth = (uss - uss_small) * MIB / KIB / (big - small)
        add(f"  (USS growth per unit, N={small}→{big}; for information)", f"{growth:.1f} KiB", None)
    ours = median(summary, "supervise", big, "sigterm_gone")
    theirs = median(summary, "circus", big, "sigterm_gone")
    if ours is None:
        shown = "n/a"
    elif theirs is None:
        shown = f"{ours:.3f} s, circus not measured"
    else:
        shown = f"{ours:.3f} s vs circus {theirs:.3f} s"
    add(
        f"SIGTERM → all gone N={big} ≤ circus",
        shown,
        ours <= theirs if ours is not None and theirs is not None else None,
    )
    kills = {n: _get(sv, n, "kill9_gone", "max") for n in ns if n in sv}
    missing = sum(_get(sv, n, "kill9_gone", "missing") or 0 for n in ns if n in sv)
    shown = ", ".join(
        f"N={n}: worst {v:.3f} s" if v is not None else f"N={n}: not gone" for n, v in kills.items()
    )
    known = [v for v in kills.values() if v is not None]
    add(
        "kill -9 → all gone within 1 s (every trial)",
        shown,
        (not missing and all(v <= 1.0 for v in known)) if kills else None,
    )
    status = median(summary, "supervise", big, "status")
    add(
        f"supervise status N={big} ≤ 50 ms",
        f"{status:.0f} ms" if status is not None else "n/a",
        status <= 50 if status is not None else None,
    )
    if gap:
        ours, control = statistics.median(gap["overlap"]["gap"]), gap["control"]["gap"]
        refused = sum(gap["overlap"]["failed"])
        worst_control = max(control)
        add(
            "restart gap with overlap: none beyond the control's jitter, 0 refused",
            f"{ours * 1000:.1f} ms (control {statistics.median(control) * 1000:.1f} ms, "
            f"worst {worst_control * 1000:.1f} ms), {refused} refused",
            ours <= worst_control and refused == 0,
        )
    return rows


# ------------------------------------------------------------------ rendering


def _number(value: float, unit: str) -> str:
    if unit == "ms" or abs(value) >= 100:
        return f"{value:.0f}"
    if unit == "" and float(value).is_integer():
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(figures: dict[str, Any], metric: str) -> str:
    fig = figures.get(metric, {})
    unit = METRICS[metric][1]
    if "median" not in fig:
        if metric == "kill9_gone" and fig.get("missing"):
            left = figures.get("kill9_left") or []
            total = sum(sum(k.get(r, 0) for r in ("service", "grandchild")) for k in left)
            return f"not gone ({total / max(1, len(left)):.0f} left)"
        if metric in TIMED_OUT and fig.get("missing"):
            return TIMED_OUT[metric]
        return "n/a"
    text = _number(fig["median"], unit)
    if fig["count"] > 1 and fig["min"] != fig["max"]:
        text += f" ({_number(fig['min'], unit)}–{_number(fig['max'], unit)})"
    ratio = figures.get("ratios", {}).get(metric)
    if ratio is not None:
        text += f" ×{ratio:.2f}"
    if fig.get("missing"):
        text += f" ({fig['missing']}× " + TIMED_OUT.get(metric, "not measured") + ")"
    return text


def flag_cell(figures: dict[str, Any], name: str) -> str:
    fig = figures.get(name) or {}
    return f"{fig['true']}/{fig['count']}" if fig.get("count") else "n/a"


def rows_for(summary: dict[str, Any], tools: list[str], n: int) -> list[list[str]]:
    rows = []
    for metric, (label, unit, _) in METRICS.items():
        label = f"{label} ({unit})" if unit else label
        rows.append(
            [label]
            + [cell(summary[t][n], metric) if n in summary.get(t, {}) else "—" for t in tools]
        )
        if metric == "restart_cli":
            name = "restart_ready"
            rows.append(
                [FLAGS[name][0]]
                + [
                    flag_cell(summary[t][n], name) if n in summary.get(t, {}) else "—"
                    for t in tools
                ]
            )
        if metric == "env_cli":
            name = "env_ready"
            rows.append(
                [FLAGS[name][0]]
                + [
                    flag_cell(summary[t][n], name) if n in summary.get(t, {}) else "—"
                    for t in tools
                ]
            )
    return rows


def text_table(summary: dict[str, Any], tools: list[str], ns: list[int]) -> str:
    out = []
    for n in ns:
        rows = [[f"N = {n}", *tools], *rows_for(summary, tools, n)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for index, row in enumerate(rows):
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if index == 0:
                out.append("  ".join("-" * w for w in widths))
        out.append("")
    return "\n".join(out)


def markdown_table(summary: dict[str, Any], tools: list[str], ns: list[int]) -> str:
    out = []
    for n in ns:
        out.append(f"**N = {n}**\n")
        out.append("| | " + " | ".join(tools) + " |")
        out.append("|---|" + "---|" * len(tools))
        for row in rows_for(summary, tools, n):
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def targets_text(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    verdict = {True: "met", False: "MISSED", None: "n/a"}
    if markdown:
        lines = ["| target (supervise) | measured | |", "|---|---|---|"]
        lines += [f"| {r['target']} | {r['measured']} | {verdict[r['met']]} |" for r in rows]
        return "\n".join(lines)
    width = max((len(r["target"]) for r in rows), default=0)
    return "\n".join(
        f"  {verdict[r['met']]:>6}  {r['target'].ljust(width)}  {r['measured']}" for r in rows
    )


def contention(trials: list[Trial]) -> str:
    """How busy the machine was with other work: before each trial, and during the idle
    windows (when what we run is nearly idle itself)."""
    before = [t["busy_before"] for t in trials if t.get("busy_before") is not None]
    idle = [v for t in trials if (v := _get(t, "a", "idle_machine_busy")) is not None]
    if not before and not idle:
        return ""

    def share(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):.0%} (max {max(values):.0%})" if values else "n/a"
        )

    text = (
        f"Machine busy (all CPUs, anyone): before trials {share(before)}, during idle "
        f"windows {share(idle)}."
    )
    if idle and statistics.median(idle) > BUSY_WARNING:
        text += " WARNING: other work shared the machine; timings are noisy."
    return text
