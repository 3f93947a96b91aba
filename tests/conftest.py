"""The orphan safety net shared by every test.

Each test runs with a fresh ``SUPERVISE_TEST_TOKEN`` in ``os.environ``. Every process it
starts inherits it — through the supervisor, its units and their grandchildren, even
those that called ``setsid`` and were reparented away — so at teardown the net finds
them by reading ``/proc/*/environ``. A process that cleared its environment is found by
its cgroup instead (``tests/tracking``), where the machine lets the test process have
one. Anything still alive is killed by pid, and the test fails: a process left behind is
a bug in the code under test or in the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import psutil
import pytest

from tests import tracking

TOKEN_VAR = "SUPERVISE_TEST_TOKEN"

# How long teardown lets processes that are on their way out finish dying before it
# calls them survivors: a supervisor stopped at the test's last line may still be
# reaping.
SETTLE_SECONDS = 3.0


def processes_with_token(token: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment carries ``token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if needle not in environ.split(b"\0"):
                continue
            proc = psutil.Process(int(entry.name))
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def _reap_own_zombies() -> None:
    """Children of the test process that ended are collected so they do not linger."""
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (OSError, psutil.Error):
            continue


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests.helpers import Run

    Run.started.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with what each supervisor it started said."""
    from tests.helpers import Run

    report = yield
    if report.failed:
        for run in Run.started:
            report.sections.append((f"supervise run -c {run.stack}", run.transcript()))
    return report


def pytest_report_header() -> str:
    where = tracking.home()
    if where is None:
        return "orphan net: environment marker only (no writable cgroup v2 hierarchy)"
    return f"orphan net: environment marker and a cgroup per test process below {where}"


@pytest.fixture(scope="session")
def cgroup() -> Iterator[tracking.Tracker | None]:
    tracker = tracking.Tracker.enter()
    yield tracker
    if tracker is not None:
        tracker.leave()


@pytest.fixture(autouse=True)
def orphan_net(monkeypatch: pytest.MonkeyPatch, cgroup: tracking.Tracker | None) -> Iterator[str]:
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, token)
    before = cgroup.members() if cgroup is not None else set()

    def survivors() -> list[psutil.Process]:
        found = {proc.pid: proc for proc in processes_with_token(token)}
        for pid in cgroup.left_behind(before) if cgroup is not None else ():
            with contextlib.suppress(psutil.Error):
                found.setdefault(pid, psutil.Process(pid))
        return list(found.values())

    yield token
    from tests.helpers import close_started_commands

    try:
        _fail_on_survivors(survivors)
    finally:
        close_started_commands()  # their pipes, also of those the net just killed


def _fail_on_survivors(survivors: Callable[[], list[psutil.Process]]) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    left = survivors()
    while left and time.monotonic() < deadline:
        _reap_own_zombies()
        time.sleep(0.05)
        left = survivors()
    if not left:
        return
    described = []
    guards = []
    for proc in left:
        try:
            command = " ".join(proc.cmdline())
            described.append(f"pid {proc.pid} {command[:120]}")
            if "guard.sh" in command:
                guards.append(proc)  # let it end its units and remove the runtime dir
            else:
                proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    _, stubborn = psutil.wait_procs(guards, timeout=SETTLE_SECONDS)
    for proc in stubborn:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(left, timeout=5)
    _reap_own_zombies()
    pytest.fail(
        f"{len(described)} process(es) started by this test were still alive at teardown:\n  "
        + "\n  ".join(described)
    )
