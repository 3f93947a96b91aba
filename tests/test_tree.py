"""A unit's process tree, found and stopped by the functions the supervisor uses: by
walking the kernel's lists of children, and by the /proc scan used where there are none."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.osproc import procfs

ROOT = Path(__file__).resolve().parent.parent


def _child(module: str, *args: str) -> str:
    """Run `python -m tests.children.MODULE ARGS` (it must succeed); its output."""
    done = subprocess.run(
        [sys.executable, "-m", f"tests.children.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_units_tree_is_found_whole_by_the_walk_and_by_the_scan_and_stopped(
    tmp_path: Path,
) -> None:
    found = json.loads(_child("trees", str(tmp_path)))
    # The leader, its group's child, a setsid'd grandchild and an adopted daemon.
    assert len(found["expected"]) == 4
    assert found["walked"] == found["expected"]
    assert found["scanned"] == found["expected"]
    assert found["alive"] == []


@pytest.mark.parametrize("how", ["wrapper", "preexec"])
def test_a_unit_whose_supervisor_dies_is_killed_by_the_kernel(how: str) -> None:
    """The parent-death signal, set through `setpriv --pdeathsig` (vfork, no Python in
    the child) or a `preexec_fn`: a unit outlives no supervisor, guard or not."""
    said = _child("orphaned", how)
    if said.strip() == "no-wrapper":
        pytest.skip("setpriv cannot set the parent-death signal here")
    pid = int(said)
    deadline = time.monotonic() + 5
    while procfs.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not procfs.alive(pid)
