"""Models are failure domains: one model's fault never reaches another model or the
global units; a `set` is a transaction; every waiting call answers as soon as its
outcome is known. All against a real `supervise run`."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.client import Client
from tests.helpers import PY, ROOT, SVC, Run, cli, wait_until, write_stack

MOODY = f'"{PY}", "-m", "tests.children.moody"'


def stack_text(beta_mode: str = "ok", *, within: float = 2.0) -> str:
    return f"""
[supervise]
coalesce = 0.0
http = "127.0.0.1:0"

[models.alpha]
MODE = "ok"
[models.beta]
MODE = "{beta_mode}"

[processes.init]
per_model = true
oneshot = true
command = ["{PY}", "{SVC}", "--publish", "DAY=1", "--sleep", "0"]
publishes = ["DAY"]

[processes.trade]
per_model = true
command = [{MOODY}]
cwd = "{ROOT}"
port = "auto"
inject = ["MODE", "DAY"]
depends_on = {{ init = "completed" }}
ready = {{ log = "^listening", within = {within} }}
max_failures = 1
backoff_initial = 0.05

[processes.agent]
per_model = true
command = ["{PY}", "{SVC}", "--sleep", "3600"]
depends_on = {{ trade = "ready", math = "ready" }}
start_seconds = 0.1

[processes.math]
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
ready = {{ tcp = "${{port}}" }}
"""


def ask(port: int) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.makefile().readline().split()


def http_get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def health_url(run: Run) -> str:
    note = run.wait_for(lambda r: "health and status on" in r.get("line", ""), "health url")
    url: str = note["line"].split(" on ")[1]
    return url


def pids(client: Client) -> dict[str, int | None]:
    return {u["unit"]: u["pid"] for u in client.status()["units"]}


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[tuple[Run, Client]]:
    run = Run(write_stack(tmp_path, stack_text()))
    try:
        for unit in ("alpha/agent", "beta/agent"):
            run.event(unit, "running", ready=True)
        yield run, Client(str(tmp_path / ".supervise" / "control.sock"))
    finally:
        assert run.stop() == 0


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("exit78", "moody: MODE 'exit78' is not supported"),
        ("crash", "exited 3"),
        ("hang", "not ready within 2 s (log probe)"),
    ],
)
def test_a_model_whose_server_fails_at_start_fails_alone(
    tmp_path: Path, mode: str, reason: str
) -> None:
    run = Run(write_stack(tmp_path, stack_text(beta_mode=mode)))
    try:
        failed = run.wait_for(
            lambda r: r.get("model") == "beta" and r.get("event") == "failed", "model beta failed"
        )
        assert failed["reason"].startswith("beta/trade failed: ")
        assert reason in failed["reason"]
        run.event("alpha/agent", "running", ready=True)
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        status = client.status()
        assert status["models"]["beta"]["state"] == "failed"
        assert status["models"]["alpha"]["state"] == "running"
        units = {u["unit"]: u for u in status["units"]}
        assert units["beta/trade"]["state"] == "failed"
        assert units["beta/agent"]["state"] == "stopped"
        assert units["alpha/trade"]["ready"] and units["math"]["ready"]
        assert ask(units["alpha/trade"]["port"])[2] == "ok"
        code, body = http_get(health_url(run))
        assert code == 200, body  # a failed model does not make the healthy one unready
        assert "beta" in body["failed_models"]  # type: ignore[operator]
        assert run.proc.poll() is None
    finally:
        assert run.stop() == 0


def test_a_bad_set_is_rolled_back_and_the_old_value_is_served_again(
    healthy: tuple[Run, Client],
) -> None:
    run, client = healthy
    before = pids(client)
    port = client.status("beta/trade")["port"]
    result = cli("set", "beta", "MODE=exit78", "-c", str(run.stack))
    assert result.returncode == 1, result.stdout
    assert "rolled back: beta/trade failed: moody: MODE 'exit78' is not supported" in result.stdout
    unit, pid, mode = ask(port)
    assert (unit, mode) == ("beta/trade", "ok")  # the old value, in a new instance
    assert int(pid) != before["beta/trade"]
    after = pids(client)
    for name in ("alpha/trade", "alpha/agent", "beta/agent", "math"):
        assert after[name] == before[name], name
    status = client.status()
    assert status["models"]["beta"]["keys"]["MODE"] == "ok"
    assert status["models"]["beta"]["state"] == "running"


def test_without_rollback_a_bad_set_fails_only_its_model_and_start_brings_it_back(
    healthy: tuple[Run, Client],
) -> None:
    run, client = healthy
    before = pids(client)
    result = cli("set", "beta", "MODE=exit78", "--no-rollback", "-c", str(run.stack))
    assert result.returncode == 1
    assert "FAILED beta/trade: moody: MODE 'exit78' is not supported" in result.stdout
    run.wait_for(
        lambda r: r.get("model") == "beta" and r.get("event") == "failed", "model beta failed"
    )
    run.event("beta/agent", "stopped")
    after = pids(client)
    for name in ("alpha/trade", "alpha/agent", "math"):
        assert after[name] == before[name], name
    assert cli("set", "beta", "MODE=ok", "-c", str(run.stack)).returncode == 0
    started = cli("start", "beta", "-c", str(run.stack))
    assert started.returncode == 0, started.stdout + started.stderr
    assert "model beta: started" in started.stdout
    status = client.status()
    assert status["models"]["beta"]["state"] == "running"
    assert ask(client.status("beta/trade")["port"])[2] == "ok"
    assert run.proc.poll() is None


def test_a_reload_leaves_a_failed_model_failed_and_applies_to_the_others(
    healthy: tuple[Run, Client],
) -> None:
    """A reload that changes a process every model runs, and adds one, restarts and
    starts them in the running models only: the failed model is not started again by it
    (nor can it make the reload roll back); `start MODEL` brings it back on the new file."""
    run, client = healthy
    stack = str(run.stack)
    assert cli("set", "beta", "MODE=exit78", "--no-rollback", "-c", stack).returncode == 1
    run.event("beta/agent", "stopped")
    before = pids(client)
    edited = (
        run.stack.read_text().replace(
            "max_failures = 1\n", 'max_failures = 1\nenv = { EDITED = "1" }\n'
        )
        + f'\n[processes.extra]\nper_model = true\ncommand = ["{PY}", "{SVC}"]\n'
    )
    path = run.stack.with_suffix(".new")
    path.write_text(edited)
    path.replace(run.stack)  # the watcher may apply it first: the log says what was done
    result = cli("reload", "-c", stack)
    assert result.returncode == 0, result.stdout + result.stderr
    done = run.wait_for(lambda r: r.get("line", "").startswith("reloaded: started"), "reloaded")
    assert done["line"] == "reloaded: started: alpha/extra; restarted: alpha/trade", done
    status = client.status()
    assert status["models"]["beta"]["state"] == "failed"
    assert status["models"]["alpha"]["state"] == "running"
    units = {u["unit"]: u for u in status["units"]}
    assert units["beta/trade"]["state"] == "failed"
    assert units["beta/extra"]["state"] == "stopped"
    assert units["alpha/extra"]["state"] == "running"
    assert pids(client)["alpha/trade"] != before["alpha/trade"]
    assert not [r for r in run.records if "rolled back" in r.get("line", "")]
    assert cli("set", "beta", "MODE=ok", "-c", stack).returncode == 0
    started = cli("start", "beta", "-c", stack)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "beta/extra" in started.stdout
    assert client.status()["models"]["beta"]["state"] == "running"
    assert ask(client.status("beta/trade")["port"])[2] == "ok"


def test_concurrent_sets_on_two_models_are_independent_batches(
    healthy: tuple[Run, Client],
) -> None:
    _, client = healthy
    answers: dict[str, dict[str, object]] = {}
    barrier = threading.Barrier(2)

    def one(model: str, mode: str) -> None:
        barrier.wait()
        answers[model] = client.set(model, {"MODE": mode}, timeout=30)

    threads = [
        threading.Thread(target=one, args=("alpha", "escape-not")),
        threading.Thread(target=one, args=("beta", "exit78")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    alpha, beta = answers["alpha"], answers["beta"]
    assert alpha["failed"] == {} and not alpha["rolled_back"], alpha
    assert alpha["restarted"] == ["alpha/trade"]
    assert beta["rolled_back"] and list(beta["failed"]) == ["beta/trade"]  # type: ignore[call-overload]
    assert beta["restarted"] == ["beta/trade"]
    assert ask(client.status("alpha/trade")["port"])[2] == "escape-not"


def test_waiting_calls_answer_with_the_reason_as_soon_as_a_unit_is_stuck(
    healthy: tuple[Run, Client],
) -> None:
    run, _ = healthy
    stack = str(run.stack)
    unset = cli("set", "alpha", "--unset", "DAY", "--timeout", "50", "-c", stack)
    assert unset.returncode == 1
    assert "rolled back: alpha/trade pending: waiting for alpha DAY" in unset.stdout
    kept = cli("set", "alpha", "--unset", "DAY", "--no-rollback", "--timeout", "50", "-c", stack)
    assert kept.returncode == 1
    assert "FAILED alpha/trade: pending: waiting for alpha DAY" in kept.stdout
    assert cli("stop", "math", "-c", stack).returncode == 0
    restarted = cli("restart", "beta/agent", "--timeout", "50", "-c", stack)
    assert restarted.returncode == 1
    assert "beta/agent pending: math is stopped" in restarted.stdout
    started = cli("start", "alpha/trade", "--timeout", "50", "-c", stack)
    assert started.returncode == 0  # it has a life already: nothing to do, and why
    assert "alpha/trade is already pending (waiting for alpha DAY)" in started.stdout
    assert "not ready within" not in unset.stdout + kept.stdout + restarted.stdout


def test_drop_reload_launch_keeps_the_file_keys_and_reload_says_what_it_started(
    healthy: tuple[Run, Client],
) -> None:
    run, client = healthy
    stack = str(run.stack)
    assert cli("drop", "alpha", "-c", stack).returncode == 0
    reloaded = cli("reload", "-c", stack)
    assert reloaded.returncode == 0, reloaded.stderr
    assert "nothing changed" in reloaded.stdout  # a dropped model stays dropped
    assert "alpha/trade" not in pids(client)
    launched = cli("launch", "alpha", "--timeout", "50", "-c", stack)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    answer = json.loads(launched.stdout)
    assert answer["failed"] == {}
    assert ask(answer["ports"]["trade"])[2] == "ok"  # MODE from the file's [models.alpha]
    run.stack.write_text(
        run.stack.read_text() + '\n[models.gamma]\nMODE = "ok"\n'
    )  # the watcher may reload first; either way gamma runs once
    reload_again = cli("reload", "-c", stack)
    assert reload_again.returncode == 0
    wait_until(lambda: "gamma/agent" in pids(client), "gamma started by a reload")
    events = [r for r in run.records if "reloaded: started" in r.get("line", "")]
    assert any("gamma/trade" in r["line"] for r in events), events


def test_reloads_asked_at_the_same_time_each_answer(healthy: tuple[Run, Client]) -> None:
    run, client = healthy
    before = pids(client)
    results: list[subprocess.CompletedProcess[str]] = []

    def reload() -> None:
        results.append(cli("reload", "-c", str(run.stack)))

    threads = [threading.Thread(target=reload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "nothing changed" in result.stdout
    assert pids(client) == before


def test_reload_that_breaks_a_unit_restores_the_previous_stack(
    healthy: tuple[Run, Client],
) -> None:
    run, client = healthy
    before = pids(client)
    good = run.stack.read_text()
    broken = good.replace('[models.beta]\nMODE = "ok"', '[models.beta]\nMODE = "exit78"')
    path = run.stack.with_suffix(".new")
    path.write_text(broken)
    path.replace(run.stack)
    # The file watcher reloads the edit first, and rolls it back ...
    note = run.wait_for(lambda r: "reload rolled back" in r.get("line", ""), "a rollback")
    assert "beta/trade failed: moody: MODE 'exit78'" in note["line"]
    # ... and so does an explicit reload of the same file, which answers so.
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 1, result.stdout
    assert "rolled back: beta/trade failed: moody: MODE 'exit78'" in result.stdout
    status = client.status()
    assert "reload rolled back" in (status["config_error"] or "")
    assert status["models"]["beta"]["state"] == "running"
    assert ask(client.status("beta/trade")["port"])[2] == "ok"
    assert pids(client)["alpha/trade"] == before["alpha/trade"]
    assert run.stop() == 0  # every line read: neither reload then says it reloaded
    assert not [r for r in run.records if r.get("line", "").startswith("reloaded: ")]
    lines = [r.get("line", "") for r in run.records]
    assert "restarting beta/trade (rolling back the reload)" in lines, lines


def test_a_rolled_back_reload_gives_a_model_it_removed_its_api_keys_back(
    healthy: tuple[Run, Client],
) -> None:
    run, client = healthy
    assert cli("set", "beta", "NOTE=kept", "-c", str(run.stack)).returncode == 0
    good = run.stack.read_text()
    broken = good.replace('[models.beta]\nMODE = "ok"\n', "").replace(
        '[models.alpha]\nMODE = "ok"', '[models.alpha]\nMODE = "exit78"'
    )
    assert broken.count("[models.") == 1
    path = run.stack.with_suffix(".new")
    path.write_text(broken)
    path.replace(run.stack)  # the watcher reloads it (beta removed, alpha/trade fails)
    run.wait_for(lambda r: "reload rolled back" in r.get("line", ""), "a rollback")

    def beta_back() -> bool:
        units = {u["unit"]: u for u in client.status()["units"]}
        return "beta/agent" in units and bool(units["beta/agent"]["ready"])

    wait_until(beta_back, "beta's units back and ready")
    status = client.status()
    assert status["models"]["beta"]["keys"]["NOTE"] == "kept"
    assert status["models"]["beta"]["state"] == "running"


def test_reload_of_a_broken_file_with_a_custom_socket_exits_2_and_changes_nothing(
    tmp_path: Path,
) -> None:
    text = stack_text().replace(
        "[supervise]\n", f'[supervise]\ncontrol_socket = "{tmp_path}/custom/ctl.sock"\n'
    )
    run = Run(write_stack(tmp_path, text))
    try:
        run.event("beta/agent", "running", ready=True)
        client = Client(str(tmp_path / "custom" / "ctl.sock"))
        before = pids(client)
        run.stack.write_text(text + "\n[processes.broken\n")
        result = cli("reload", "-c", str(run.stack))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "invalid TOML" in result.stderr
        assert pids(client) == before
    finally:
        assert run.stop() == 0


def test_on_model_failure_stop_stack_restores_fail_fast(tmp_path: Path) -> None:
    text = stack_text(beta_mode="exit78").replace(
        "[supervise]\n", '[supervise]\non_model_failure = "stop-stack"\n'
    )
    run = Run(write_stack(tmp_path, text))
    failed = run.event("beta/trade", "failed")
    assert failed["exit_code"] == 78
    assert run.wait() == 1
    assert run.event("math", "stopped")
