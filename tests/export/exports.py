"""Exporting a stack in a test: the exporter's environment is fixed (not the test
runner's), so output depends on the stack alone."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from supervisor.config.load import load_stack
from supervisor.export.common import OutputFile
from supervisor.export.compose import ComposeOptions, export_compose
from supervisor.export.kubernetes import KubernetesOptions, export_kubernetes
from supervisor.export.report import Report
from supervisor.export.systemd import SystemdOptions, export_systemd

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "supervise.toml"
# The supervise executable systemd-analyze must find (it checks ExecStart= paths).
SUPERVISE = str(Path(sys.executable).with_name("supervise"))
WORKDIR = "/srv/stack"


def reference_stack(directory: Path) -> Path:
    """A copy of the repository's stack, away from any .env of the checkout."""
    target = directory / "supervise.toml"
    shutil.copyfile(REFERENCE, target)
    return target


def export(
    target: str,
    stack: Path,
    environ: dict[str, str] | None = None,
    **options: object,
) -> tuple[dict[str, OutputFile], Report]:
    loaded = load_stack(stack, environ or {})
    if target == "kubernetes":
        files, report, _ = export_kubernetes(loaded, KubernetesOptions(**options))  # type: ignore[arg-type]
    elif target == "systemd":
        options = {"workdir": WORKDIR, **options}
        files, report, _ = export_systemd(loaded, SystemdOptions(**options))  # type: ignore[arg-type]
    else:
        files, report, _ = export_compose(loaded, ComposeOptions(**options))  # type: ignore[arg-type]
    return files, report
