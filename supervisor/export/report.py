"""What a target cannot keep of supervise's guarantees, and why: printed after every
export and written as JSON by `--report FILE`. Pure.

Invariants: findings are per process (or the stack), not per unit, so a report does not
grow with the number of models; each names the target's nearest equivalent when there is
one; the order is the order they were found, which is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Severity = Literal["lost", "degraded"]


@dataclass(frozen=True)
class Finding:
    """One guarantee a target does not keep (`lost`) or keeps only in part (`degraded`)."""

    subject: str  # a process name, "stack", or "model"
    feature: str  # e.g. "socket", "preload", "failure window"
    severity: Severity
    detail: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.feature}: {self.detail}"


@dataclass
class Report:
    target: str
    mode: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, subject: str, feature: str, severity: Severity, detail: str) -> None:
        finding = Finding(subject, feature, severity, detail)
        if finding not in self.findings:
            self.findings.append(finding)

    def lines(self) -> list[str]:
        title = self.target + (f" ({self.mode})" if self.mode else "")
        if not self.findings:
            return [f"{title}: every supervise guarantee of this stack is kept"]
        return [f"{title}: {len(self.findings)} thing(s) not kept:"] + [
            f"  {finding}" for finding in self.findings
        ]

    def to_json(self, files: list[str]) -> str:
        document = {
            "target": self.target,
            "mode": self.mode,
            "files": files,
            "not_mapped": [asdict(f) for f in self.findings],
        }
        return json.dumps(document, indent=2) + "\n"


def report_container_losses(report: Report, name: str, *, socket: bool, preload: bool) -> None:
    """What every unit loses in a container of its own, restarted by the platform."""
    if socket:
        report.add(
            name,
            "socket",
            "lost",
            "no held listening socket: connections are refused while the container restarts",
        )
    if preload:
        report.add(name, "preload", "lost", "no warm fork: every start is a cold interpreter")
