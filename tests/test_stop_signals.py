"""One stop signal per process: a `stop`, a change's restart and the shutdown each send
the unit's stop signal once to every process of its tree (its group and a descendant in
a session of its own), never twice — a second SIGINT makes uvicorn drop what it serves."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import PY, ROOT, Run, cli, cli_started, wait_until, write_stack

COUNT = str(ROOT / "tests" / "children" / "sigcount.py")


def stack(tmp_path: Path, stop_signal: str, head: str = "", linger: float = 0.3) -> Path:
    return write_stack(
        tmp_path,
        f"""
{head}
[models.alpha]
SIGNATURE = "v1"

[processes.tree]
per_model = true
command = ["{PY}", "{COUNT}"]
inject = ["SIGNATURE"]
stop_signal = "{stop_signal}"
env = {{ SIGLOG = "{tmp_path / "signals.log"}", SIGLINGER = "{linger}" }}
""",
    )


def log_lines(tmp_path: Path) -> list[tuple[int, str]]:
    log = tmp_path / "signals.log"
    words = log.read_text().split() if log.exists() else []
    return [(int(pid), what) for pid, what in zip(words[::2], words[1::2], strict=True)]


def next_tree(tmp_path: Path, seen: set[int]) -> set[int]:
    """The three processes of the tree started after those `seen`."""

    def fresh() -> set[int] | None:
        up = {pid for pid, what in log_lines(tmp_path) if what == "up"} - seen
        return up if len(up) == 3 else None

    found: set[int] = wait_until(fresh, "the tree's three processes up")
    seen.update(found)
    return found


def signals_by_pid(tmp_path: Path, pids: set[int]) -> Counter[int]:
    got = Counter(pid for pid, what in log_lines(tmp_path) if what != "up")
    return Counter({pid: got[pid] for pid in pids})


def test_stop_restart_and_shutdown_signal_each_process_once(tmp_path: Path) -> None:
    path = stack(tmp_path, "SIGINT")
    run = Run(path)
    try:
        seen: set[int] = set()
        run.event("alpha/tree", "running", ready=True)
        first = next_tree(tmp_path, seen)
        stopped = cli("stop", "alpha/tree", "-c", str(path))
        assert stopped.returncode == 0, stopped.stderr
        assert signals_by_pid(tmp_path, first) == Counter(dict.fromkeys(first, 1))

        started = cli("start", "alpha/tree", "-c", str(path))
        assert started.returncode == 0, started.stderr
        second = next_tree(tmp_path, seen)
        changed = cli("set", "alpha", "SIGNATURE=v2", "-c", str(path))  # a change's restart
        assert changed.returncode == 0, changed.stdout
        assert signals_by_pid(tmp_path, second) == Counter(dict.fromkeys(second, 1))

        third = next_tree(tmp_path, seen)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        assert signals_by_pid(tmp_path, third) == Counter(dict.fromkeys(third, 1))
        assert "SIGINT" in (tmp_path / "signals.log").read_text()
    finally:
        run.stop()


@pytest.mark.parametrize("budget", [30, 1], ids=["within the shutdown budget", "past it"])
def test_a_unit_already_stopping_is_not_signalled_again_by_the_shutdown(
    tmp_path: Path, budget: int
) -> None:
    """A `stop` in flight when SIGTERM comes (a deploy): the shutdown signalled it a
    second time, and a third when its budget ran out ("killing what is left")."""
    head = f"[supervise]\nshutdown_timeout = {budget}"
    path = stack(tmp_path, "SIGINT", head=head, linger=2.5)
    run = Run(path)
    stopping = None
    try:
        run.event("alpha/tree", "running", ready=True)
        tree = next_tree(tmp_path, set())
        stopping = cli_started("stop", "alpha/tree", "-c", str(path))
        wait_until(lambda: sum(signals_by_pid(tmp_path, tree).values()) == 3, "signalled")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        assert signals_by_pid(tmp_path, tree) == Counter(dict.fromkeys(tree, 1))
    finally:
        run.stop()
        if stopping is not None:
            stopping.communicate(timeout=30)
