"""Formatting, pure: `run`'s output lines and events (text, colour, JSON), log-file lines
(text, or JSON in OpenTelemetry's log data model), and the CLI's status table and change
summaries. Standard library only, so client commands can use it without importing the
runtime."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from supervisor.observe import ToolsEvent
from supervisor.state import Event, ModelEvent, ModelState, State

AnyEvent = Event | ModelEvent | ToolsEvent

SUPERVISOR_NAME = "supervise"
_COLORS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_RESET = "\x1b[0m"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def color_of(unit: str) -> int:
    return _COLORS[sum(unit.encode()) % len(_COLORS)]


def format_line(
    ts: float, unit: str, stream: str, line: str, *, fmt: str, width: int, color: bool
) -> str:
    if fmt == "json":
        return json.dumps({"ts": ts, "unit": unit, "stream": stream, "line": line})
    prefix = f"{clock(ts)} {unit:<{width}} |"
    if color:
        prefix = f"\x1b[{color_of(unit)}m{prefix}{_RESET}"
    return f"{prefix} {line}"


def event_record(event: Event) -> dict[str, Any]:
    """A unit event as the JSON object `run --log-format json` prints."""
    new = event.new
    record: dict[str, Any] = {
        "ts": event.ts,
        "unit": event.unit,
        "event": str(new.state),
        "ready": new.ready,
    }
    if new.pid is not None:
        record["pid"] = new.pid
    if new.exit_code is not None:
        record["exit_code"] = new.exit_code
    if new.reason:
        record["reason"] = new.reason
    if new.stop is not None:
        record["stop"] = str(new.stop)
    return record


def model_event_record(event: ModelEvent) -> dict[str, Any]:
    record: dict[str, Any] = {"ts": event.ts, "model": event.model, "event": str(event.new.state)}
    if event.new.reason:
        record["reason"] = event.new.reason
    return record


def tools_event_record(event: ToolsEvent) -> dict[str, Any]:
    """A tool-list event as `run --log-format json` prints it."""
    record: dict[str, Any] = {
        "ts": event.ts,
        "unit": event.unit,
        "event": "tools",
        "tools": event.new.count,
        "tools_hash": event.new.digest,
        "names": list(event.new.names),
    }
    if event.old is not None:
        record["previous_hash"] = event.old.digest
    return record


def event_text(event: AnyEvent) -> str:
    """An event in words: "alpha/trade running pid 4121 ready"."""
    if isinstance(event, ModelEvent):
        return f"model {event.model} {event.new.describe()}"
    if isinstance(event, ToolsEvent):
        return event.describe()
    return f"{event.unit} {event.new.describe()}"


def masked(event: AnyEvent, mask: Callable[[str], str]) -> AnyEvent:
    """The event with its reasons masked: before it is encoded, since JSON's escapes
    (a quote, a backslash, a non-ASCII letter) would hide a secret from a mask applied
    to the encoded line."""
    if isinstance(event, ToolsEvent):
        return event
    if isinstance(event, ModelEvent):
        return replace(event, new=replace(event.new, reason=mask(event.new.reason)))
    return replace(event, new=replace(event.new, reason=mask(event.new.reason)))


def format_event(event: AnyEvent, *, fmt: str, width: int, color: bool) -> str:
    if fmt == "json":
        if isinstance(event, ModelEvent):
            return json.dumps(model_event_record(event))
        if isinstance(event, ToolsEvent):
            return json.dumps(tools_event_record(event))
        return json.dumps(event_record(event))
    text = event_text(event)
    return format_line(event.ts, SUPERVISOR_NAME, "event", text, fmt=fmt, width=width, color=color)


# ------------------------------------------------------------------ log files

# OpenTelemetry's severity numbers for the texts used (logs data model, SeverityNumber).
SEVERITY = {"INFO": 9, "WARN": 13, "ERROR": 17}


def stamp(ts: float) -> str:
    """Local time with its offset, to the millisecond: log files span days and zones."""
    from datetime import datetime  # for log files only (~0.4 MiB resident)

    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _unit_attributes(unit: str) -> dict[str, Any]:
    model, _, process = unit.rpartition("/")
    attributes: dict[str, Any] = {"supervise.unit": unit, "supervise.process": process}
    if model:
        attributes["supervise.model"] = model
    return attributes


def file_line(ts: float, unit: str, stream: str, line: str, *, fmt: str) -> str:
    """One output line of a unit (or, with stream "event", a note of the supervisor's) as
    written to a log file: as printed, with a full timestamp; or one JSON object with
    OpenTelemetry log data model names (a unit's output has no severity of its own)."""
    if fmt != "json":
        return f"{stamp(ts)} {unit} | {line}"
    record: dict[str, Any] = {"timestamp": stamp(ts)}
    if stream == "event":
        record.update(severity_text="INFO", severity_number=SEVERITY["INFO"])
        attributes: dict[str, Any] = {}
    else:
        attributes = {**_unit_attributes(unit), "log.iostream": stream}
    record.update(body=line, attributes=attributes)
    return json.dumps(record, ensure_ascii=False)


def _severity(event: AnyEvent) -> str:
    if isinstance(event, ModelEvent):
        return "ERROR" if event.new.state in (ModelState.STOPPING, ModelState.FAILED) else "INFO"
    if isinstance(event, Event):
        if event.new.state is State.FAILED:
            return "ERROR"
        if event.new.state is State.BACKOFF:
            return "WARN"
    return "INFO"


def file_event(event: AnyEvent, *, fmt: str) -> str:
    """A state change, as written to `supervise.log`."""
    text = event_text(event)
    if fmt != "json":
        return f"{stamp(event.ts)} {SUPERVISOR_NAME} | {text}"
    attributes: dict[str, Any]
    if isinstance(event, ModelEvent):
        attributes = {"supervise.model": event.model, "supervise.event": str(event.new.state)}
        if event.new.reason:
            attributes["supervise.reason"] = event.new.reason
    elif isinstance(event, ToolsEvent):
        attributes = {
            **_unit_attributes(event.unit),
            "supervise.event": "tools",
            "mcp.tools.count": event.new.count,
            "mcp.tools.hash": event.new.digest,
        }
    else:
        new = event.new
        attributes = {
            **_unit_attributes(event.unit),
            "supervise.event": str(new.state),
            "supervise.ready": new.ready,
        }
        if new.pid is not None:
            attributes["process.pid"] = new.pid
        if new.exit_code is not None:
            attributes["process.exit.code"] = new.exit_code
        if new.reason:
            attributes["supervise.reason"] = new.reason
    severity = _severity(event)
    record = {
        "timestamp": stamp(event.ts),
        "severity_text": severity,
        "severity_number": SEVERITY[severity],
        "body": text,
        "attributes": attributes,
    }
    return json.dumps(record, ensure_ascii=False)
