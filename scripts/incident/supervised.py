"""Part 2, under supervise: the repository's stack file as a fresh deploy, to every SUMMARY.

``supervise.toml`` is copied alone into an empty directory and run with ``python -m
supervisor run --log-format json`` (the venv's python first on PATH, since units run
``python -m ...``), with an empty ``DATA_DIR`` and a small ``DAYS``. Once every model's
agent printed its ``SUMMARY`` line, supervise gets SIGTERM — to its pid alone, as Render
sends it; it stops its own units — and must exit 0.

Invariants: supervise's output goes to a file read incrementally (never an unread
pipe); it is stopped before ``run_supervised`` returns, whatever happened; a SUMMARY
counts only when the supervisor printed it for that model's ``agent`` unit.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from scripts.incident.children import STACK_FILE, Children, IncidentError, child_env, indent, poll

# `supervise run` to every SUMMARY: a few seconds here; bounded well inside a test's 120 s.
SUMMARY_SECONDS = 60.0
_SUMMARY = re.compile(r"SUMMARY days=(\d+) trades=(\d+) rejected=(\d+) tool_errors=(\d+)")

Record = dict[str, Any]


@dataclass
class Supervised:
    """What part 2 saw."""

    days: int
    models: list[str]
    summaries: dict[str, str]
    exit_code: int
    agent_lines: dict[str, list[str]] = field(default_factory=dict)
    # Per model: its trade server's ready line (it names the signature it was started with).
    trade_ready: dict[str, str] = field(default_factory=dict)
    # Per model: did its trade server start only after its init exited 0?
    gated: dict[str, bool] = field(default_factory=dict)

    def counts(self, model: str) -> tuple[int, int]:
        """(days walked, tool errors) from the model's SUMMARY line; (0, -1) without one."""
        found = _SUMMARY.search(self.summaries.get(model, ""))
        if found is None:
            return (0, -1)
        return (int(found.group(1)), int(found.group(4)))

    @property
    def ok(self) -> bool:
        """Every model walked every day with zero tool errors, and supervise exited 0."""
        return (
            self.exit_code == 0
            and bool(self.models)
            and all(self.counts(model) == (self.days, 0) for model in self.models)
        )


class JsonLog:
    """The records ``supervise run --log-format json`` wrote so far, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Record] = []
        self._offset = 0
        self._partial = b""

    def __repr__(self) -> str:
        return f"<JsonLog {self.path}: {len(self.records)} records>"

    def read(self) -> list[Record]:
        """Every record so far; a line still being written waits for its newline."""
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    self.records.append(record)
        return self.records

    def lines(self, unit: str) -> list[str]:
        return [r["line"] for r in self.records if r.get("unit") == unit and "line" in r]


def _first(lines: list[str], text: str) -> str:
    return next((line for line in lines if text in line), "")


def gated(records: list[Record], model: str) -> bool:
    """Whether ``model``'s trade server started only after its init exited 0."""
    init_done = trade_started = None
    for index, record in enumerate(records):
        unit, event = record.get("unit"), record.get("event")
        if init_done is None and unit == f"{model}/init" and event == "exited":
            init_done = index if record.get("exit_code") == 0 else None
        if trade_started is None and unit == f"{model}/trade" and event == "starting":
            trade_started = index
    return init_done is not None and trade_started is not None and init_done < trade_started


def run_supervised(
    workdir: Path, out: TextIO, *, days: int = 3, summary_seconds: float = SUMMARY_SECONDS
) -> Supervised:
    """Part 2; see the module docstring. Narrates on ``out``.

    Raises:
        IncidentError: supervise ended, or a SUMMARY did not come, within the deadline.
    """
    deploy, disk = workdir / "deploy", workdir / "disk"
    deploy.mkdir(parents=True, exist_ok=True)
    disk.mkdir(parents=True, exist_ok=True)
    stack = Path(shutil.copy(STACK_FILE, deploy / "supervise.toml"))
    with stack.open("rb") as handle:
        models = sorted(tomllib.load(handle).get("models", {}))
    print("== Part 2: under supervise (a fresh deploy of supervise.toml) ==", file=out)
    print(f"supervise run -c {stack} (DATA_DIR {disk}, empty; DAYS {days})", file=out)

    with Children(workdir) as children:
        supervisor = children.start(
            "supervise",
            [sys.executable, "-m", "supervisor", "run", "-c", str(stack), "--log-format", "json"],
            child_env({"DATA_DIR": str(disk), "DAYS": str(days)}),
            deploy,
            group=False,
        )
        print(f"supervise started, pid {supervisor.proc.pid}", file=out, flush=True)
        log = JsonLog(supervisor.log)
        summaries: dict[str, str] = {}

        def every_summary() -> tuple[dict[str, str] | None, str]:
            for record in log.read():
                unit, line = str(record.get("unit", "")), str(record.get("line", ""))
                if unit.endswith("/agent") and line.startswith("SUMMARY"):
                    summaries.setdefault(unit.removesuffix("/agent"), line)
            if set(summaries) >= set(models):
                return summaries, "all"
            if supervisor.proc.poll() is not None:
                tail = "\n".join(json.dumps(r) for r in log.records[-15:])
                raise IncidentError(
                    "supervise run",
                    f"exited {supervisor.proc.returncode} before every SUMMARY; last records:\n"
                    f"{tail}\n{supervisor.output()[-2000:]}",
                )
            return None, f"SUMMARY lines from {sorted(summaries)}"

        poll(f"a SUMMARY line from each of {models}", every_summary, summary_seconds)
        supervisor.signal(signal.SIGTERM)
        code = supervisor.wait()
        log.read()

    result = Supervised(
        days=days,
        models=models,
        summaries=summaries,
        exit_code=code,
        agent_lines={model: log.lines(f"{model}/agent") for model in models},
        trade_ready={model: _first(log.lines(f"{model}/trade"), "serving") for model in models},
        gated={model: gated(log.records, model) for model in models},
    )
    for model in models:
        order = "after" if result.gated[model] else "NOT after"
        print(f"{model}: trade started {order} {model}/init exited 0 and published", file=out)
        print(f"    {model}/trade | {result.trade_ready[model]}", file=out)
        agent = indent("\n".join(result.agent_lines[model]), f"    {model}/agent | ")
        print(agent, end="", file=out)
    print(f"supervise exited {code} after SIGTERM", file=out)
    return result
