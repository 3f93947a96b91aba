"""The orphan safety net shared by every test.

Each test runs with a fresh ``SUPERVISE_TEST_TOKEN`` in ``os.environ``. Every process it
starts inherits it — through the supervisor, its units and their grandchildren, even
those that called ``setsid`` and were reparented away — so at teardown the net finds
them by reading ``/proc/*/environ``. Anything still alive is killed by pid, and the test
fails: a process left behind is a bug in the code under test or in the test.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import psutil
import pytest

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


@pytest.fixture(autouse=True)
def orphan_net(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, token)
    yield token
    deadline = time.monotonic() + SETTLE_SECONDS
    survivors = processes_with_token(token)
    while survivors and time.monotonic() < deadline:
        _reap_own_zombies()
        time.sleep(0.05)
        survivors = processes_with_token(token)
    if not survivors:
        return
    described = []
    for proc in survivors:
        try:
            described.append(f"pid {proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    psutil.wait_procs(survivors, timeout=5)
    _reap_own_zombies()
    pytest.fail(
        f"{len(described)} process(es) started by this test were still alive at teardown:\n  "
        + "\n  ".join(described)
    )
