"""Where the reference stack's code may reach: the supervisor only through its client, and
nothing of the incident's reproduction (scripts/) or of the tests."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_services_know_the_supervisor_only_through_its_client_and_never_import_scripts() -> None:
    reaches: dict[str, set[str]] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        modules = imported_modules(path)
        outside = {m for m in modules if m.split(".")[0] in {"supervisor", "scripts", "tests"}} - {
            "supervisor.client"
        }
        if outside:
            reaches[str(path.relative_to(SERVICES))] = outside
    users = [p for p in SERVICES.rglob("*.py") if "supervisor.client" in imported_modules(p)]

    assert reaches == {}
    assert [p.relative_to(SERVICES).as_posix() for p in users] == ["agent/run.py"]
