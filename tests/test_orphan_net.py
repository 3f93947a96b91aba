"""The suite's own orphan net sees what the environment marker cannot: a process that
cleared its environment, left its session and was re-parented to init."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests import tracking
from tests.conftest import processes_with_token
from tests.helpers import wait_until


def test_a_process_with_no_marker_that_left_for_init_is_still_found(
    cgroup: tracking.Tracker | None, orphan_net: str
) -> None:
    if cgroup is None:
        pytest.skip("no writable cgroup v2 hierarchy on this machine: the marker alone")
    before = cgroup.members()
    started = subprocess.run(
        ["sh", "-c", "env -i setsid sleep 60 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(started.stdout)
    try:
        wait_until(lambda: _is_bare_sleep(pid), "the sleep exec'd with no environment")
        assert tracking.parent_of(pid) != os.getpid()  # its parent sh is gone
        assert pid not in {proc.pid for proc in processes_with_token(orphan_net)}
        assert pid in cgroup.left_behind(before)
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the sleep reaped by init")
    assert pid not in cgroup.left_behind(before)


def _is_bare_sleep(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        return comm == "sleep" and Path(f"/proc/{pid}/environ").read_bytes() == b""
    except OSError:
        return False
