"""The CLI's tables and summaries, pure and standard library only: `supervise status`
and the other client commands import this and nothing of the runtime."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a client 4 ms
if TYPE_CHECKING:
    from typing import Any


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value / (1024 * 1024):.1f}M"


def format_status(answer: dict[str, Any]) -> str:
    """The `supervise status` table (one unit, or all with the models' states)."""
    units = answer.get("units", [answer] if "unit" in answer else [])
    header = (
        "UNIT",
        "STATE",
        "READY",
        "PID",
        "PORT",
        "RESTARTS",
        "UPTIME",
        "CPU",
        "RSS",
        "TOOLS",
        "REASON",
    )
    rows = [header]
    for u in units:
        rows.append(
            (
                u["unit"],
                u["state"],
                "yes" if u.get("ready") else "-",
                str(u.get("pid") or "-"),
                str(u.get("port") or "-"),
                str(u.get("restarts", 0)),
                _age(u.get("uptime")),
                "-" if u.get("cpu") is None else f"{u['cpu']:.1f}s",
                _size(u.get("rss")),
                "-" if u.get("tools") is None else f"{u['tools']} {u.get('tools_hash')}",
                u.get("reason") or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
        for r in rows
    ]
    failed = {
        name: model
        for name, model in (answer.get("models") or {}).items()
        if model.get("state") != "running"
    }
    for name, model in failed.items():
        reason = f" ({model['reason']})" if model.get("reason") else ""
        lines.append(f"model {name}: {model['state']}{reason}")
    if answer.get("config_error"):
        lines.append(f"config (the stack runs on the last good file):\n{answer['config_error']}")
    return "\n".join(line.rstrip() for line in lines)


def format_change(answer: dict[str, Any], *, waited: bool = True) -> str:
    """What a set, drop, reload, start or restart did, in a few lines; not `waited` for
    (`set --no-wait`), its restarts are under way, not done."""
    parts = [str(answer["message"])] if answer.get("message") else []
    for key in ("changed", "started", "stopped", "restarted", "added", "removed"):
        if answer.get(key):
            label = key if waited or key != "restarted" else "restarting (not waited for)"
            parts.append(f"{label}: {', '.join(answer[key])}")
    for unit, reason in (answer.get("failed") or {}).items():
        parts.append(f"FAILED {unit}: {reason}")
    return "\n".join(parts) or "nothing changed"


def format_log(record: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(record.get("ts", 0)))
    return f"{stamp} {record.get('unit')} | {record.get('line')}"
