"""A unit's process tree, found and stopped by the functions the supervisor uses: by
walking the kernel's lists of children, and by the /proc scan used where there are none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_units_tree_is_found_whole_by_the_walk_and_by_the_scan_and_stopped(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.children.trees", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    # The leader, its group's child, a setsid'd grandchild and an adopted daemon.
    assert len(found["expected"]) == 4
    assert found["walked"] == found["expected"]
    assert found["scanned"] == found["expected"]
    assert found["alive"] == []
