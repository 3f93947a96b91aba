"""What the supervisor observes of a unit besides its state: the MCP tools it serves,
how long its probes take, and notes for `supervise why`. Pure, standard library only
(the output formatter and the CLI read these without importing the runtime).

Invariants:
- A `ToolList`'s digest depends on the tools' definitions only, not on their order or
  on JSON formatting: the same server always hashes the same.
- A `Histogram` has fixed bounds; its snapshot counts are cumulative (Prometheus's `le`).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.digest import sha256_hex

DIGEST_LENGTH = 12  # hex characters of the tool-list hash shown in status

# Probe attempts on loopback take a millisecond or two; a stuck server takes its timeout.
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ToolList:
    """The tools an MCP server listed: their names (sorted) and a digest of the whole
    definitions (name, description, schemas)."""

    names: tuple[str, ...]
    digest: str

    @property
    def count(self) -> int:
        return len(self.names)

    def describe(self) -> str:
        return f"{self.count} MCP tool(s) ({', '.join(self.names) or 'none'}), hash {self.digest}"


def tool_list(tools: Iterable[Mapping[str, Any]]) -> ToolList:
    """The `ToolList` of the `tools` array of MCP `tools/list` results (all pages)."""
    listed = sorted((dict(t) for t in tools), key=lambda t: str(t.get("name", "")))
    canonical = json.dumps(listed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = sha256_hex(canonical.encode())[:DIGEST_LENGTH]
    return ToolList(tuple(str(t.get("name", "")) for t in listed), digest)


@dataclass(frozen=True)
class ToolsEvent:
    """A unit's MCP tool list was seen for the first time, or changed."""

    ts: float  # wall clock, for display only
    unit: str
    old: ToolList | None
    new: ToolList

    def describe(self) -> str:
        if self.old is None:
            return f"{self.unit} serves {self.new.describe()}"
        added = sorted(set(self.new.names) - set(self.old.names))
        removed = sorted(set(self.old.names) - set(self.new.names))
        changes = [f"+{n}" for n in added] + [f"-{n}" for n in removed]
        detail = f" ({' '.join(changes)})" if changes else " (definitions changed)"
        return (
            f"{self.unit} MCP tools changed: {self.old.count} -> {self.new.count}{detail}, "
            f"hash {self.old.digest} -> {self.new.digest}"
        )


@dataclass(frozen=True)
class Note:
    """Something observed of a unit that is not a state change (a failed liveness
    attempt, a readiness probe's last error): kept in its history for `why`."""

    ts: float  # wall clock
    unit: str
    text: str


@dataclass(frozen=True)
class ProbeStats:
    """One probe's attempts of one unit: a latency histogram of the attempts that
    passed, and the count of those that did not."""

    probe: str  # "ready" or "live"
    kind: str  # tcp, http, exec, mcp
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # attempts that took at most each bound
    count: int
    total: float  # seconds, summed
    failures: int


class Histogram:
    """Latencies of one probe of one unit (a running tally; `snapshot` gives a value)."""

    def __init__(self, probe: str, kind: str, bounds: tuple[float, ...] = PROBE_BUCKETS) -> None:
        self.probe, self.kind, self.bounds = probe, kind, bounds
        self.buckets = [0] * len(bounds)  # per bound, not cumulative
        self.count = 0
        self.total = 0.0
        self.failures = 0

    def observe(self, seconds: float) -> None:
        index = bisect_left(self.bounds, seconds)
        if index < len(self.bounds):
            self.buckets[index] += 1
        self.count += 1
        self.total += seconds

    def failed(self) -> None:
        self.failures += 1

    def snapshot(self) -> ProbeStats:
        cumulative, running = [], 0
        for count in self.buckets:
            running += count
            cumulative.append(running)
        return ProbeStats(
            self.probe,
            self.kind,
            self.bounds,
            tuple(cumulative),
            self.count,
            self.total,
            self.failures,
        )
