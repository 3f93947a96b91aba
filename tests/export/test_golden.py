"""The reference stack exported for every target, compared with golden files under
tests/export/golden/. `UPDATE_GOLDEN=1 pytest tests/export/test_golden.py` rewrites them
after a deliberate change; review the diff like code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from supervisor.config.load import load_stack
from supervisor.export.build import build_plan
from supervisor.export.leaks import check_no_secrets
from tests.export.exports import SUPERVISE, export, reference_stack
from tests.export.validators import (
    compose_validate,
    kubernetes_semantics,
    kubernetes_validate,
    systemd_verify,
)

GOLDEN = Path(__file__).parent / "golden"
CASES: dict[str, tuple[str, dict[str, object]]] = {
    "kubernetes": ("kubernetes", {}),
    "kubernetes-embedded": ("kubernetes", {"mode": "embedded"}),
    "systemd": ("systemd", {"supervise": "/usr/local/bin/supervise"}),
    "systemd-254": ("systemd", {"supervise": "/usr/local/bin/supervise", "systemd_version": 254}),
    "compose": ("compose", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_reference_stack_exports_exactly_as_the_golden_files(tmp_path: Path, case: str) -> None:
    target, options = CASES[case]
    files, report = export(target, reference_stack(tmp_path), None, **options)
    produced = {name: f.text for name, f in files.items()}
    produced["report.json"] = report.to_json(sorted(files))
    directory = GOLDEN / case
    if os.environ.get("UPDATE_GOLDEN") == "1":
        for old in directory.rglob("*"):
            if old.is_file():
                old.unlink()
        for name, text in produced.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
    expected = {
        str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*") if p.is_file()
    }
    assert sorted(produced) == sorted(expected), "files differ; UPDATE_GOLDEN=1 after a review"
    for name, text in produced.items():
        assert text == expected[name], f"{case}/{name} differs; UPDATE_GOLDEN=1 after a review"


def test_the_reference_kubernetes_export_passes_kubernetes_validate_strict(tmp_path: Path) -> None:
    for mode in ("native", "embedded"):
        files, _ = export("kubernetes", reference_stack(tmp_path), mode=mode)
        assert kubernetes_validate(files, tmp_path / mode) == []
        assert kubernetes_semantics(files) == []


def test_the_reference_systemd_export_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install -y systemd)")
    files, _ = export("systemd", reference_stack(tmp_path), supervise=SUPERVISE)
    assert systemd_verify(files, tmp_path / "units", ("alpha", "beta")) == []


def test_the_reference_compose_export_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    files, _ = export("compose", reference_stack(tmp_path))
    assert compose_validate(files) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_reference_export_writes_no_secret(tmp_path: Path, case: str) -> None:
    target, options = CASES[case]
    stack = reference_stack(tmp_path)
    files, _ = export(target, stack, None, **options)
    check_no_secrets({n: f.text for n, f in files.items()}, build_plan(load_stack(stack, {})))
    assert all(f.private for n, f in files.items() if n.startswith("secrets/"))


def _keys(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if value and not key.startswith(("#", "["))
    ]


def test_every_systemd_dependency_is_ordered_and_ready_before_its_dependent_starts(
    tmp_path: Path,
) -> None:
    """systemd starts an After= dependent once the dependency is *started*: a oneshot
    when it exited, Type=notify at READY=1, any other service after ExecStartPost."""
    files, _ = export("systemd", reference_stack(tmp_path))
    texts = {name: f.text for name, f in files.items()}
    for name, text in texts.items():
        if not name.endswith(".service") or "/" in name or "keys@" in name:
            continue
        keys = _keys(text)
        requires = [v for k, v in keys if k == "Requires" and v.endswith(".service")]
        after = {v for k, v in keys if k == "After"}
        for dep in requires:
            assert dep in after, f"{name} requires {dep} without waiting for it"
            template = dep.replace("@%i.", "@.")
            dep_keys = _keys(texts[template])
            kind = dict(dep_keys)["Type"]
            drop_ins = [
                t for n, t in texts.items() if n.startswith(dep.split("%i")[0]) and "/" in n
            ]
            started_when_ready = kind in ("oneshot", "notify") or any(
                "ExecStartPost=" in t for t in [texts[template], *drop_ins]
            )
            assert started_when_ready, f"{dep} counts as started before it is ready"
