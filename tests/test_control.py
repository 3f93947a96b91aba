"""The control plane against a real `supervise run`: exact restarts, reload, launch and
drop, authority, bad requests, status and health."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.client import Client, ClientError
from tests.conftest import TOKEN_VAR, processes_with_token
from tests.helpers import PY, SVC, Run, cli, cli_started, wait_until, write_stack

STACK = f"""
[supervise]
coalesce = 0.25
http = "127.0.0.1:0"

[models.alpha]
SIGNATURE = "alpha-v1"
TODAY_DATE = "2025-10-01"
[models.beta]
SIGNATURE = "beta-v1"
TODAY_DATE = "2025-10-01"

[processes.trade]
per_model = true
command = ["{PY}", "{SVC}", "--listen", "--delay", "0.2"]
port = "auto"
inject = ["SIGNATURE"]
ready = {{ tcp = "${{port}}" }}

[processes.price]
per_model = true
command = ["{PY}", "{SVC}", "--listen", "--delay", "0.2"]
port = "auto"
inject = ["TODAY_DATE"]
ready = {{ tcp = "${{port}}" }}

[processes.math]
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
ready = {{ tcp = "${{port}}" }}
"""

UNITS = ("alpha/trade", "alpha/price", "beta/trade", "beta/price", "math")


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.makefile().readline().strip()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Run, Client]]:
    path = write_stack(tmp_path, STACK)
    run = Run(path)
    try:
        for unit in UNITS:
            run.event(unit, "running", ready=True)
        yield run, Client(str(tmp_path / ".supervise" / "control.sock"))
    finally:
        assert run.stop() == 0


def statuses(client: Client) -> dict[str, dict[str, object]]:
    return {u["unit"]: u for u in client.status()["units"]}


def test_set_restarts_exactly_the_units_injecting_the_key_and_returns_when_ready(
    stack: tuple[Run, Client],
) -> None:
    run, client = stack
    before = statuses(client)
    result = cli("set", "alpha", "SIGNATURE=alpha-v2", "-c", str(run.stack))
    assert result.returncode == 0, result.stderr
    assert "restarted: alpha/trade" in result.stdout
    # Returned only once ready: the new instance answers at once, with the new value.
    port = int(before["alpha/trade"]["port"])  # type: ignore[call-overload]
    unit, pid, signature = ask(port).split()
    assert (unit, signature) == ("alpha/trade", "alpha-v2")
    after = statuses(client)
    assert int(pid) == after["alpha/trade"]["pid"] != before["alpha/trade"]["pid"]
    for name in ("alpha/price", "beta/trade", "beta/price", "math"):
        assert after[name]["pid"] == before[name]["pid"], name
    assert after["alpha/trade"]["restarts"] == 1


def test_a_rollback_in_flight_when_the_supervisor_stops_ends_cleanly(tmp_path: Path) -> None:
    # v2 fails at once; the rollback's v1 instance then takes 30 s to listen (the flag),
    # and SIGTERM comes during that rollback: a clean stop, no model failure, no trace.
    flag = tmp_path / "slow"
    script = (
        f'if [ "$SIGNATURE" = v2 ]; then exit 3; fi; '
        f"if [ -e {flag} ]; then exec {PY} {SVC} --listen --delay 30; fi; "
        f"exec {PY} {SVC} --listen"
    )
    path = write_stack(
        tmp_path,
        f"""
[models.alpha]
SIGNATURE = "v1"
[processes.trade]
per_model = true
command = ["sh", "-c", '{script}']
port = "auto"
inject = ["SIGNATURE"]
ready = {{ tcp = "${{port}}", timeout = 60 }}
""",
    )
    run = Run(path)
    setter = None
    try:
        run.event("alpha/trade", "running", ready=True)
        flag.touch()
        mark = len(run.records)
        setter = cli_started("set", "alpha", "SIGNATURE=v2", "-c", str(path))
        note = run.line("supervise", "rolling back model alpha")
        assert run.records.index(note) > mark
        run.event("alpha/trade", "running", after=run.records.index(note))
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        setter.communicate(timeout=30)
    finally:
        if setter is not None and setter.poll() is None:
            setter.kill()
            setter.wait()
        run.stop()  # already ended unless an assertion above failed
    transcript = run.transcript()
    assert "Traceback" not in transcript and "Error" not in transcript, transcript
    assert "model alpha failed" not in transcript


def test_a_set_whose_model_is_dropped_before_it_applies_fails(tmp_path: Path) -> None:
    # A 4 s coalesce window: the set is queued (its client connected within the 1.5 s
    # the test gives it), and the drop takes the model before the set's batch runs.
    path = write_stack(
        tmp_path,
        f"""
[supervise]
coalesce = 4

[models.alpha]
SIGNATURE = "v1"

[processes.trade]
per_model = true
command = ["{PY}", "{SVC}"]
inject = ["SIGNATURE"]
""",
    )
    run = Run(path)
    try:
        run.event("alpha/trade", "running", ready=True)
        setter = cli_started("set", "alpha", "SIGNATURE=v2", "-c", str(path))
        try:
            time.sleep(1.5)
            dropped = cli("drop", "alpha", "-c", str(path))
            assert dropped.returncode == 0, dropped.stdout + dropped.stderr
            out, err = setter.communicate(timeout=30)
        finally:
            if setter.poll() is None:
                setter.kill()
                setter.wait()
        assert setter.returncode == 1, out + err
        assert "FAILED model alpha: it was dropped before the change applied" in out, out
    finally:
        assert run.stop() == 0


def test_a_set_in_flight_when_the_supervisor_stops_is_answered_not_cut_off(
    tmp_path: Path,
) -> None:
    path = write_stack(
        tmp_path,
        f"""
[models.alpha]
SIGNATURE = "alpha-v1"
DELAY = "0"

[processes.trade]
per_model = true
command = ["{PY}", "{SVC}", "--listen", "--delay", "${{model.DELAY}}"]
port = "auto"
inject = ["SIGNATURE"]
ready = {{ tcp = "${{port}}", timeout = 60 }}
""",
    )
    run = Run(path)
    first = run.event("alpha/trade", "running", ready=True)
    setter = cli_started("set", "alpha", "DELAY=30", "-c", str(path))
    try:
        # The new instance is up but not ready (it listens only after 30 s): the set waits.
        second = run.event("alpha/trade", "running", after=run.records.index(first) + 1)
        assert second["pid"] != first["pid"]
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        out, err = setter.communicate(timeout=30)
    finally:
        if setter.poll() is None:
            setter.kill()
            setter.wait()
        run.stop()  # already ended unless an assertion above failed
    assert setter.returncode == 1
    assert "closed the connection" not in err
    # Not a rollback it could not finish: why the change was cut short.
    assert "rolled back" not in out
    assert "the stack is shutting down (it received SIGTERM): POST /v1/models/alpha/keys " in err
    assert "was not completed" in err


def test_set_that_changes_nothing_returns_at_once_and_says_so(
    stack: tuple[Run, Client],
) -> None:
    _, client = stack
    answer = client.set("beta", {"SIGNATURE": "beta-v1"})
    assert answer["restarted"] == []
    assert answer["message"] == "nothing changed"


def test_a_burst_of_20_sets_restarts_each_affected_unit_once(
    stack: tuple[Run, Client],
) -> None:
    run, client = stack
    mark = len(run.records)
    answers: list[dict[str, object]] = []
    barrier = threading.Barrier(20)

    def one(day: int) -> None:
        barrier.wait()
        answers.append(client.set("alpha", {"TODAY_DATE": f"2025-10-{day:02d}"}))

    threads = [threading.Thread(target=one, args=(d,)) for d in range(2, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 20
    assert all(a["failed"] == {} for a in answers)
    starts = [r["unit"] for r in run.records[mark:] if r.get("event") == "starting"]
    assert starts == ["alpha/price"]


def test_unit_of_one_model_acts_only_for_its_own_model(tmp_path: Path) -> None:
    script = tmp_path / "caller.py"
    script.write_text(
        "from supervisor.client import Client, ClientError\n"
        "c = Client()\n"
        "def attempt(label, call):\n"
        "    try:\n"
        "        call()\n"
        "        print(label, 'ok', flush=True)\n"
        "    except ClientError as exc:\n"
        "        print(label, exc.status, exc.message, flush=True)\n"
        "attempt('status', lambda: c.status())\n"
        "attempt('set-beta', lambda: c.set('beta', {'MARKET': 'x'}))\n"
        "attempt('stop-other', lambda: c.stop('beta/worker'))\n"
        "attempt('launch', lambda: c.launch('gamma'))\n"
        "attempt('set-own', lambda: c.set('alpha', {'MARKET': 'eu'}, wait=False))\n"
        "import os, subprocess, sys\n"
        "fake = dict(os.environ, SUPERVISE_ENV=os.environ['SUPERVISE_ENV'].replace("
        "'/alpha/', '/beta/'))\n"
        'code = \'from supervisor.client import Client; Client().set("beta", {"MARKET": "y"})\'\n'
        "r = subprocess.run([sys.executable, '-c', code], env=fake, capture_output=True,"
        " text=True)\n"
        "print('spoofed-marker', 'refused' if '403' in r.stderr or 'may only' in r.stderr"
        " else 'ALLOWED ' + r.stderr[-200:], flush=True)\n"
    )
    path = write_stack(
        tmp_path,
        f"""
[models.alpha]
MARKET = "us"
[models.beta]
MARKET = "cn"
[processes.worker]
per_model = true
command = ["{PY}", "{SVC}"]
inject = ["MARKET"]
[processes.caller]
per_model = true
oneshot = true
command = ["sh", "-c", "[ $SUPERVISE_MODEL = alpha ] && exec {PY} {script} || true"]
""",
    )
    run = Run(path, env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        run.event("alpha/caller", "exited")
        lines = run.lines("alpha/caller")
        assert "status ok" in lines
        assert any(line.startswith("set-beta 403 a process of unit alpha/caller") for line in lines)
        assert any(line.startswith("stop-other 403") for line in lines)
        assert any(line.startswith("launch 403") for line in lines)
        assert "set-own ok" in lines
        assert "spoofed-marker refused" in lines
        wait_until(
            lambda: [r["event"] for r in run.events("alpha/worker")].count("starting") == 2,
            "alpha/worker restarted with its own model's new key",
        )
    finally:
        assert run.stop() == 0
    assert [r["event"] for r in run.events("beta/worker")].count("starting") == 1


def test_bad_requests_get_clear_errors_and_change_nothing(
    stack: tuple[Run, Client],
    tmp_path: Path,
) -> None:
    run, client = stack
    before = statuses(client)
    cases = [
        (("set", "gamma", "A=1"), 1, "unknown model 'gamma'"),
        (("set", "alpha", "not-a-pair"), 2, "expected KEY=VALUE, got 'not-a-pair'"),
        (("set", "alpha", "1BAD=x"), 2, "key '1BAD' is invalid"),
        (("set", "alpha", "SIGNATURE=../evil"), 2, "SIGNATURE '../evil' is invalid"),
        (("launch", "../evil"), 2, "model name '../evil' is invalid"),
        (("launch", "alpha"), 1, "model 'alpha' is already running"),
        (("restart", "alpha/nope"), 1, "unknown unit 'alpha/nope'"),
        (("drop", "nope"), 1, "unknown model 'nope'"),
    ]
    for args, code, message in cases:
        result = cli(*args, "-c", str(run.stack))
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    with pytest.raises(ClientError) as info:
        client._call("POST", "/v1/models/alpha/keys", {"set": {"A": "1"}, "colour": "red"})
    assert info.value.status == 400
    assert "unknown field 'colour'" in info.value.message
    with pytest.raises(ClientError) as info:
        client._call("POST", "/v1/models/alpha/keys", {"set": {"A": 1}})
    assert info.value.status == 422
    assert {k: v["pid"] for k, v in statuses(client).items()} == {
        k: v["pid"] for k, v in before.items()
    }
    assert "A" not in client.status()["models"]["alpha"]["keys"]


def test_launch_and_drop_a_model_at_runtime(stack: tuple[Run, Client]) -> None:
    run, client = stack
    result = cli(
        "launch", "gamma", "SIGNATURE=gamma-v1", "TODAY_DATE=2025-10-03", "-c", str(run.stack)
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer["units"]) == {"gamma/trade", "gamma/price"}
    assert all(u["ready"] for u in answer["units"].values())
    assert ask(answer["ports"]["trade"]).split()[2] == "gamma-v1"
    pid = answer["units"]["gamma/trade"]["pid"]
    result = cli("drop", "gamma", "-c", str(run.stack))
    assert result.returncode == 0, result.stderr
    assert "gamma/trade" not in statuses(client)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "gamma/trade gone")


def test_a_launch_missing_a_key_says_which_and_a_later_set_brings_the_model_up(
    stack: tuple[Run, Client],
) -> None:
    run, client = stack
    result = cli("launch", "gamma", "SIGNATURE=gamma-v1", "-c", str(run.stack))
    assert result.returncode == 1, result.stdout
    assert "supervise: gamma/price: pending: waiting for gamma TODAY_DATE" in result.stderr
    assert "model gamma stays launched; `supervise drop gamma` removes it" in result.stderr
    assert json.loads(result.stdout)["units"]["gamma/price"]["state"] == "pending"
    done = cli("set", "gamma", "TODAY_DATE=2025-10-03", "-c", str(run.stack))
    assert done.returncode == 0, done.stdout
    assert "gamma/price" in done.stdout
    assert statuses(client)["gamma/price"]["ready"]


def test_stop_start_restart_and_readyz(stack: tuple[Run, Client]) -> None:
    run, client = stack
    note = run.wait_for(lambda r: "health and status on" in r.get("line", ""), "health url")
    url = note["line"].split(" on ")[1]

    def readyz() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    assert readyz() == 200
    assert cli("stop", "math", "-c", str(run.stack)).returncode == 0
    assert readyz() == 503
    answer = client.set("beta", {"TODAY_DATE": "2025-10-09"})
    assert "math" not in answer["restarted"]  # a stopped unit stays stopped
    assert statuses(client)["math"]["state"] == "stopped"
    result = cli("start", "math", "-c", str(run.stack))
    assert result.returncode == 0
    assert "math started: running" in result.stdout
    assert readyz() == 200
    again = cli("start", "math", "-c", str(run.stack))
    assert again.returncode == 0
    assert "nothing to do" in again.stdout
    restarted = cli("restart", "beta/trade", "-c", str(run.stack))
    assert restarted.returncode == 0
    assert "ready" in restarted.stdout
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(url.replace("/readyz", "/status"), method="POST"), timeout=5
        )
    info.value.close()
    assert info.value.code == 405


def test_status_json_and_socket_permissions(stack: tuple[Run, Client], tmp_path: Path) -> None:
    run, _ = stack
    sock = tmp_path / ".supervise" / "control.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    result = cli("status", "--json", env={"SUPERVISE_SOCKET": str(sock)})
    assert result.returncode == 0
    document = json.loads(result.stdout)
    units = {u["unit"]: u for u in document["units"]}
    assert set(units) == set(UNITS)
    assert all(u["state"] == "running" and u["ready"] and u["rss"] > 0 for u in units.values())
    table = cli("status", "-c", str(run.stack)).stdout
    assert table.splitlines()[0].split()[:4] == ["UNIT", "STATE", "READY", "PID"]


def test_client_commands_exit_3_when_no_supervisor_runs(tmp_path: Path) -> None:
    result = cli("status", env={"SUPERVISE_SOCKET": str(tmp_path / "none.sock")})
    assert result.returncode == 3
    assert "no supervisor answers" in result.stderr


def test_a_second_supervisor_on_the_same_socket_is_refused_and_takes_nothing_away(
    stack: tuple[Run, Client],
) -> None:
    """The refused one and its guard leave the first supervisor's socket and registry
    entry alone: once they are gone, the first still answers, by socket and by file."""
    run, client = stack
    token = os.environ[TOKEN_VAR]

    def guards() -> set[int]:
        return {p.pid for p in processes_with_token(token) if "guard.sh" in " ".join(p.cmdline())}

    before = guards()
    result = cli("run", "-c", str(run.stack), timeout=30)
    assert result.returncode == 2
    assert "another supervisor is running" in result.stderr
    wait_until(lambda: guards() == before, "the refused supervisor's guard gone")
    assert {u["unit"] for u in client.status()["units"]} == set(UNITS)
    shown = cli("status", "-c", str(run.stack))
    assert shown.returncode == 0, shown


def test_broken_file_on_reload_changes_nothing(stack: tuple[Run, Client]) -> None:
    run, client = stack
    before = statuses(client)
    good = run.stack.read_text()
    run.stack.write_text(
        good + "\n[processes.loop]\ncommand = 'true'\n"
        "depends_on = { loop2 = 'started' }\n[processes.loop2]\n"
        "command = 'true'\ndepends_on = { loop = 'started' }\n"
    )
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 2
    assert "dependency cycle" in result.stderr
    assert "dependency cycle" in client.status()["config_error"]
    assert {k: v["pid"] for k, v in statuses(client).items()} == {
        k: v["pid"] for k, v in before.items()
    }
    run.stack.write_text(good)
    wait_until(lambda: client.status()["config_error"] is None, "config error cleared")


def test_editing_one_models_signature_in_the_file_restarts_only_that_model(
    stack: tuple[Run, Client],
) -> None:
    run, client = stack
    before = statuses(client)
    mark = len(run.records)
    run.stack.write_text(run.stack.read_text().replace('"beta-v1"', '"beta-v2"'))
    run.event("beta/trade", "running", ready=True, after=mark)
    port = int(before["beta/trade"]["port"])  # type: ignore[call-overload]
    assert ask(port).split()[2] == "beta-v2"
    after = statuses(client)
    changed = {k for k in UNITS if after[k]["pid"] != before[k]["pid"]}
    assert changed == {"beta/trade"}


def test_a_reload_right_after_an_edit_reports_what_the_edit_restarted(
    stack: tuple[Run, Client],
) -> None:
    """The file watcher applies an edit by itself. A `supervise reload` asked after it
    says who applied the file and what that did, not a bare "nothing changed"; one asked
    at the same time joins the watcher's reload (or makes it find nothing to do) and
    answers what the edit restarted."""
    run, client = stack

    def edit(old: str, new: str) -> int:
        tmp = run.stack.with_suffix(".new")
        tmp.write_text(run.stack.read_text().replace(old, new))
        mark = len(run.records)
        tmp.replace(run.stack)
        return mark

    mark = edit('"beta-v1"', '"beta-v2"')
    run.event("beta/trade", "running", ready=True, after=mark)
    run.wait_for(lambda r: r.get("line", "").startswith("reloaded: "), "the watcher's reload")
    later = cli("reload", "-c", str(run.stack))
    assert later.returncode == 0, later
    assert "reloaded: nothing changed (the file watcher applied this version at " in later.stdout
    assert "restarted: beta/trade)" in later.stdout, later.stdout

    mark = edit('"beta-v2"', '"beta-v3"')
    pid = statuses(client)["beta/trade"]["pid"]
    joined = cli("reload", "-c", str(run.stack))
    assert joined.returncode == 0, joined
    assert "restarted: beta/trade" in joined.stdout, joined.stdout
    assert statuses(client)["beta/trade"]["pid"] != pid
    stops = [
        r
        for r in run.records[mark:]
        if r.get("unit") == "beta/trade" and r.get("event") == "stopping"
    ]
    assert len(stops) == 1, stops
    port = int(statuses(client)["beta/trade"]["port"])  # type: ignore[call-overload]
    assert ask(port).split()[2] == "beta-v3"


def test_sighup_reloads_the_stack_file(stack: tuple[Run, Client]) -> None:
    run, client = stack
    text = run.stack.read_text().replace(
        "[processes.math]", f'[processes.extra]\ncommand = ["{PY}", "{SVC}"]\n\n[processes.math]'
    )
    # Write without the watcher seeing a partial file: rename into place.
    tmp = run.stack.with_suffix(".new")
    tmp.write_text(text)
    tmp.replace(run.stack)
    run.signal(signal.SIGHUP)
    run.event("extra", "running", ready=True)
    assert "extra" in statuses(client)


def test_logs_shows_recent_lines(stack: tuple[Run, Client]) -> None:
    run, _ = stack
    result = cli("logs", "math", "-c", str(run.stack))
    assert result.returncode == 0
    assert "math | up " in result.stdout


def test_a_follower_that_went_away_frees_its_connection_even_if_its_unit_prints_nothing(
    tmp_path: Path,
) -> None:
    """`logs -f` of a quiet unit, interrupted: the supervisor notices the client closed
    (not only when a line comes), so the followers do not use up `max_connections`."""
    path = write_stack(
        tmp_path,
        '[supervise]\nmax_connections = 2\n[processes.quiet]\ncommand = "sleep 1000"\n',
    )
    run = Run(path)
    followers: list[subprocess.Popen[str]] = []
    try:
        run.event("quiet", "running", ready=True)
        follow = ("logs", "quiet", "-f", "--no-events", "-c", str(path))
        followers = [cli_started(*follow) for _ in range(2)]

        def both_connected() -> bool:
            for index, follower in enumerate(followers):
                if follower.poll() is not None:  # turned away: a probe held the other slot
                    follower.communicate()
                    followers[index] = cli_started(*follow)
                    return False
            return cli("status", "-c", str(path)).returncode == 1  # busy: both slots taken

        assert wait_until(both_connected, "both followers connected", interval=0.2)
        for follower in followers:
            follower.send_signal(signal.SIGINT)
            follower.communicate(timeout=10)
        wait_until(lambda: cli("status", "-c", str(path)).returncode == 0, "the slots free again")
    finally:
        for follower in followers:
            if follower.poll() is None:
                follower.kill()
            follower.communicate()
        assert run.stop() == 0


def test_held_socket_refuses_no_connection_across_restarts(tmp_path: Path) -> None:
    path = write_stack(
        tmp_path,
        f"""
[processes.held]
command = ["{PY}", "{SVC}", "--listen", "--delay", "0.1"]
port = "auto"
socket = true
ready = {{ log = "^listening" }}
""",
    )
    run = Run(path)
    try:
        run.event("held", "running", ready=True)
        port = Client(str(tmp_path / ".supervise" / "control.sock")).status("held")["port"]
        refused, answered, cut, pids = 0, 0, 0, set()
        stop = threading.Event()

        def hammer() -> None:
            nonlocal refused, answered, cut
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    reply = ask(port).split()
                except ConnectionRefusedError:
                    refused += 1
                    continue
                except OSError:
                    cut += 1  # accepted by an instance as it was being stopped
                    continue
                if not reply:
                    cut += 1
                    continue
                pids.add(reply[1])
                answered += 1

        thread = threading.Thread(target=hammer)
        thread.start()
        for _ in range(10):
            assert cli("restart", "held", "-c", str(path)).returncode == 0
        stop.set()
        thread.join(70)
        assert refused == 0
        assert answered > 10
        assert len(pids) >= 10  # every instance served from the same held socket
    finally:
        assert run.stop() == 0


def test_editing_an_env_file_restarts_units_with_the_new_value(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GREETING=hello\n")
    out = tmp_path / "out"
    out.mkdir()
    path = write_stack(
        tmp_path,
        f"""
[processes.greeter]
command = ["{PY}", "{SVC}", "--dump", "{out}"]
env = {{ MESSAGE = "${{GREETING}} world" }}
""",
    )
    run = Run(path)
    try:
        run.event("greeter", "running", ready=True)
        mark = len(run.records)
        (tmp_path / ".env").write_text("GREETING=goodbye\n")
        run.event("greeter", "running", ready=True, after=mark)
        env = json.loads((out / "greeter.json").read_text())
        assert env["MESSAGE"] == "goodbye world"
        assert env["GREETING"] == "goodbye"
    finally:
        assert run.stop() == 0


def test_a_stack_file_that_is_a_symlink_is_reloaded_when_pointed_elsewhere(
    tmp_path: Path,
) -> None:
    one = f'[processes.a]\ncommand = ["{PY}", "{SVC}"]\n'
    two = one + f'[processes.b]\ncommand = ["{PY}", "{SVC}"]\n'
    write_stack(tmp_path, one, "v1.toml")
    write_stack(tmp_path, two, "v2.toml")
    link = tmp_path / "supervise.toml"
    link.symlink_to("v1.toml")
    run = Run(link)
    try:
        run.event("a", "running", ready=True)
        fresh = tmp_path / ".link.new"
        fresh.symlink_to("v2.toml")
        fresh.replace(link)  # `ln -sfn v2.toml supervise.toml`, atomically
        run.event("b", "running", ready=True)
        # ... and the file it points at now is the one watched for edits.
        edited = two + f'[processes.c]\ncommand = ["{PY}", "{SVC}"]\n'
        (tmp_path / "v2.toml").write_text(edited)
        run.event("c", "running", ready=True)
    finally:
        assert run.stop() == 0


def test_a_stack_files_directory_replaced_whole_is_watched_anew(tmp_path: Path) -> None:
    """`rm -rf conf && cp -r new conf`: the watch was on the old directory's inode, so
    edits after the swap went unseen."""
    one = f'[processes.a]\ncommand = ["{PY}", "{SVC}"]\n'
    two = one + f'[processes.b]\ncommand = ["{PY}", "{SVC}"]\n'
    conf, new = tmp_path / "conf", tmp_path / "new"
    conf.mkdir()
    new.mkdir()
    stack = write_stack(conf, one)
    write_stack(new, two)
    run = Run(stack, cwd=tmp_path)  # not from inside the directory that goes
    try:
        run.event("a", "running", ready=True)
        shutil.rmtree(conf)
        shutil.copytree(new, conf)
        run.event("b", "running", ready=True)
        # The later edit is seen too.
        stack.write_text(two + f'[processes.c]\ncommand = ["{PY}", "{SVC}"]\n')
        run.event("c", "running", ready=True)
    finally:
        assert run.stop() == 0


def test_a_supervisor_whose_working_directory_was_removed_still_reloads(
    tmp_path: Path,
) -> None:
    """Started from a directory a deploy then removes: every reload failed with
    "FileNotFoundError" (the validating interpreter was started there)."""
    one = f'[processes.a]\ncommand = ["{PY}", "{SVC}"]\n'
    stack = write_stack(tmp_path, one)
    started_in = tmp_path / "release-1"
    started_in.mkdir()
    run = Run(stack, cwd=started_in)
    try:
        run.event("a", "running", ready=True)
        started_in.rmdir()
        stack.write_text(one + f'[processes.b]\ncommand = ["{PY}", "{SVC}"]\n')
        run.event("b", "running", ready=True)
        result = cli("reload", "-c", str(stack))
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        assert run.stop() == 0


def test_logs_follow_and_events_stream_live(stack: tuple[Run, Client]) -> None:
    run, client = stack
    events = client.events()
    logs = client.logs("beta/price", lines=0, follow=True, events=False)
    assert cli("restart", "beta/price", "-c", str(run.stack)).returncode == 0
    seen = []
    for event in events:
        seen.append((event["unit"], event["state"]))
        if event["unit"] == "beta/price" and event["state"] == "running" and event["ready"]:
            break
    assert ("beta/price", "stopping") in seen
    first = next(iter(logs))
    events.close()
    logs.close()
    assert first["unit"] == "beta/price"
    assert first["line"].startswith("up ")


def test_set_that_breaks_a_unit_is_rolled_back_unless_asked_to_keep_it(tmp_path: Path) -> None:
    script = tmp_path / "picky.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.environ['MODE'] == 'bad':\n"
        "    print('picky: MODE bad is not supported', file=sys.stderr)\n"
        "    sys.exit(78)\n"
        "print('up', os.environ['MODE'], flush=True)\n"
        "time.sleep(60)\n"
    )
    path = write_stack(
        tmp_path,
        f"""
[models.alpha]
MODE = "good"
[processes.picky]
per_model = true
command = ["{PY}", "{script}"]
inject = ["MODE"]
required = false
ready = {{ log = "^up" }}
""",
    )
    run = Run(path)
    try:
        run.event("alpha/picky", "running", ready=True)
        result = cli("set", "alpha", "MODE=bad", "-c", str(path))
        assert result.returncode == 1
        assert "rolled back: alpha/picky failed: picky: MODE bad is not supported" in result.stdout
        # Restarted with the old value (printed before the answer; read here by a thread).
        wait_until(lambda: run.lines("alpha/picky").count("up good") == 2, "a second 'up good'")
        kept = cli("set", "alpha", "MODE=bad", "--no-rollback", "-c", str(path))
        assert kept.returncode == 1
        assert "FAILED alpha/picky: picky: MODE bad is not supported" in kept.stdout
        fixed = cli("set", "alpha", "MODE=good", "-c", str(path))
        assert fixed.returncode == 0, fixed.stdout
        assert "restarted: alpha/picky" in fixed.stdout
    finally:
        assert run.stop() == 0


def test_a_rolled_back_crash_is_reported_without_the_retry_that_never_comes(
    tmp_path: Path,
) -> None:
    """A unit that crashes (not exit 78) is in backoff, "exited 3; restarting in 0.5 s".
    Once the set or reload is rolled back, no retry with that value comes: the answer and
    the log say what happened, not a retry."""
    path = write_stack(
        tmp_path,
        """
[models.alpha]
MODE = "good"
[processes.crashy]
per_model = true
command = ["sh", "-c", "test \\"$MODE\\" = bad && exit 3; echo up; exec sleep 60"]
inject = ["MODE"]
ready = { log = "^up" }
""",
    )
    run = Run(path)
    try:
        run.event("alpha/crashy", "running", ready=True)
        result = cli("set", "alpha", "MODE=bad", "-c", str(path))
        assert result.returncode == 1, result.stdout
        assert "rolled back: alpha/crashy failed: exited 3\n" in result.stdout
        assert "FAILED alpha/crashy: exited 3\n" in result.stdout
        assert "restarting in" not in result.stdout
        path.write_text(path.read_text().replace('MODE = "good"', 'MODE = "bad"'))
        reloaded = cli("reload", "-c", str(path))
        assert reloaded.returncode == 1, reloaded.stdout
        assert "rolled back: alpha/crashy failed: exited 3" in reloaded.stdout
        assert "restarting in" not in reloaded.stdout
        notes = [line for line in run.lines("supervise") if "roll" in line]
        assert notes and not [line for line in notes if "restarting in" in line], notes
    finally:
        assert run.stop() == 0


def test_a_unit_cannot_freeze_or_crash_the_supervisor_through_its_hand_off_file(
    tmp_path: Path,
) -> None:
    path = write_stack(
        tmp_path,
        f"""
[processes.fifo]
oneshot = true
required = false
restart = "never"
command = ["sh", "-c", "rm -f $SUPERVISE_ENV && mkfifo $SUPERVISE_ENV"]
[processes.steady]
command = ["{PY}", "{SVC}"]
""",
    )
    run = Run(path)
    try:
        failed = run.event("fifo", "failed")
        assert "SUPERVISE_ENV file: not a regular file" in failed["reason"]
        result = cli("status", "-c", str(path))
        assert result.returncode == 0
        assert "steady" in result.stdout
    finally:
        assert run.stop() == 0


def test_odd_requests_get_errors_and_the_supervisor_lives_on(
    stack: tuple[Run, Client],
    tmp_path: Path,
) -> None:
    run, client = stack
    for query in ("lines=inf", "lines=-1", "lines=nan"):
        with pytest.raises(ClientError) as info:
            list(client._stream(f"/v1/logs?{query}"))
        assert info.value.status == 400
    with pytest.raises(ClientError) as info:
        client._call("POST", "/v1/models/alpha/keys", {"set": {}, "timeout": -1})
    assert info.value.status == 422
    answers: list[object] = []

    def drop() -> None:
        try:
            answers.append(client.drop("beta"))
        except ClientError as exc:
            answers.append(exc.status)

    threads = [threading.Thread(target=drop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(a for a in answers if isinstance(a, int)) == [404, 404]
    (tmp_path / ".env").write_bytes(b"GOOD=1\nBAD=\xff\xfe\n")
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 2
    assert "cannot read env file" in result.stderr
    assert statuses(client)["alpha/trade"]["state"] == "running"


def test_secret_values_never_reach_reasons_or_the_status_port(tmp_path: Path) -> None:
    path = write_stack(
        tmp_path,
        f"""
[supervise]
http = "127.0.0.1:0"
[env]
API_KEY = "sk-very-secret-123"
[processes.leaky]
command = ["sh", "-c", "echo rejected key $API_KEY >&2; exit 78"]
required = false
[processes.steady]
command = ["{PY}", "{SVC}"]
""",
    )
    run = Run(path)
    try:
        failed = run.event("leaky", "failed")
        assert failed["reason"] == "rejected key ***"
        note = run.wait_for(lambda r: "health and status on" in r.get("line", ""), "health")
        url = note["line"].split(" on ")[1].replace("/readyz", "/status")
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        assert "sk-very-secret-123" not in body
        assert "rejected key ***" in body
        assert "sk-very-secret-123" not in json.dumps(run.records)
    finally:
        assert run.stop() == 0


def test_concurrent_restarts_of_one_unit_coalesce_into_one(tmp_path: Path) -> None:
    path = write_stack(
        tmp_path,
        f"""
[processes.slow]
command = ["{PY}", "{SVC}", "--listen", "--delay", "1"]
port = "auto"
ready = {{ tcp = "${{port}}" }}
""",
    )
    run = Run(path)
    try:
        run.event("slow", "running", ready=True)
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        mark = len(run.records)
        answers: list[dict[str, object]] = []
        barrier = threading.Barrier(5)

        def restart() -> None:
            barrier.wait()
            answers.append(client.restart("slow"))

        threads = [threading.Thread(target=restart) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(answers) == 5
        assert all("restarted" in str(a["message"]) for a in answers)
        starts = [
            r
            for r in run.records[mark:]
            if r.get("unit") == "slow" and r.get("event") == "starting"
        ]
        assert len(starts) == 1
    finally:
        assert run.stop() == 0


def test_a_change_that_comes_while_the_last_one_stops_its_units_joins_that_restart(
    tmp_path: Path,
) -> None:
    path = write_stack(
        tmp_path,
        f"""
[models.alpha]
DAY = "1"
[processes.slow_to_stop]
per_model = true
command = ["{PY}", "{SVC}", "--ignore-term", "--listen"]
port = "auto"
inject = ["DAY"]
ready = {{ tcp = "${{port}}" }}
stop_timeout = 1
""",
    )
    run = Run(path)
    try:
        run.event("alpha/slow_to_stop", "running", ready=True)
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        mark = len(run.records)
        answers: list[dict[str, object]] = []
        first = threading.Thread(target=lambda: answers.append(client.set("alpha", {"DAY": "2"})))
        first.start()
        # The unit ignores SIGTERM: it takes its stop_timeout to go, and the second change
        # comes in meanwhile (no coalesce window: the first was applied at once).
        run.event("alpha/slow_to_stop", "stopping", after=mark)
        answers.append(client.set("alpha", {"DAY": "3"}))
        first.join(60)
        assert all(a["failed"] == {} for a in answers), answers
        starts = [
            r
            for r in run.records[mark:]
            if r.get("unit") == "alpha/slow_to_stop" and r.get("event") == "starting"
        ]
        assert len(starts) == 1
        assert client.status()["models"]["alpha"]["keys"]["DAY"] == "3"
    finally:
        assert run.stop() == 0


def held_stack(
    tmp_path: Path, command: str, *, keys: str = 'SIGNATURE = "v1"', inject: str = "SIGNATURE"
) -> Path:
    """Model alpha's one server (`command`, a TOML array) on a held socket, restarted by
    overlap, ready once it prints "listening"."""
    return write_stack(
        tmp_path,
        f"""
[models.alpha]
{keys}
[processes.held]
per_model = true
command = {command}
port = "auto"
socket = true
overlap = true
inject = ["{inject}"]
ready = {{ log = "^listening" }}
""",
    )


def test_an_overlapping_restart_serves_throughout_and_returns_once_the_old_one_is_gone(
    tmp_path: Path,
) -> None:
    path = held_stack(tmp_path, f'["{PY}", "{SVC}", "--listen", "--delay", "0.3"]')
    run = Run(path)
    try:
        run.event("alpha/held", "running", ready=True)
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        port = client.status("alpha/held")["port"]
        with Hammer(port) as hammer:
            overlapping_restarts(client, run, port, hammer.seen)
        assert hammer.failures == []  # not one connection refused, reset or cut
    finally:
        assert run.stop() == 0


def overlapping_restarts(
    client: Client, run: Run, port: int, seen: list[tuple[float, str]]
) -> None:
    for value in ("v2", "v3"):
        old = client.status("alpha/held")["pid"]
        mark = len(run.records)
        answer = client.set("alpha", {"SIGNATURE": value})
        assert answer["failed"] == {}, answer
        assert not os.path.exists(f"/proc/{old}"), "set returned before the old one went"
        said = f"alpha/held previous instance, pid {old}, stopped: its successor serves"
        run.line("supervise", said)
        spawned = run.event("alpha/held", "running", after=mark)
        assert spawned["ready"] is False and spawned["pid"] != old
        run.event("alpha/held", "running", ready=True, after=mark)
        assert ask(port).split()[2] == value
        # While the new one took its 0.3 s to listen, the old one went on answering.
        assert any(pid == str(old) and t > float(spawned["ts"]) for t, pid in seen)


def test_an_overlapping_restart_whose_new_instance_fails_leaves_the_old_one_serving(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "refuse"
    script = (
        f'if [ "$SIGNATURE" = bad ] || [ -e {flag} ]; then echo refusing >&2; exit 3; fi; '
        f"exec {PY} {SVC} --listen --delay 0.3"
    )
    path = held_stack(tmp_path, f'["sh", "-c", \'{script}\']')
    run = Run(path)
    try:
        run.event("alpha/held", "running", ready=True)
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        old = client.status("alpha/held")["pid"]
        port = client.status("alpha/held")["port"]
        with Hammer(port) as hammer:
            mark = len(run.records)
            bad = cli("set", "alpha", "SIGNATURE=bad", "-c", str(path))
            assert bad.returncode == 1, bad.stdout
            assert "rolled back: alpha/held failed: the new instance ended before it was " in (
                bad.stdout
            )
            assert f"(exited 3); the previous one, pid {old}, serves on" in bad.stdout
            # The rollback found the old instance running with the old keys: no restart.
            back = run.event("alpha/held", "running", ready=True, after=mark)
            assert back["pid"] == old
            starts = [r for r in run.records[mark:] if r.get("event") == "starting"]
            assert len(starts) == 1, starts
            flag.touch()  # the same config, and a new instance that will not start
            refused = cli("restart", "alpha/held", "-c", str(path))
            assert refused.returncode == 1, refused.stdout
            assert f"the previous one, pid {old}, serves on" in refused.stdout + refused.stderr
            status = client.status()
            assert status["models"]["alpha"]["state"] == "running", status["models"]
            assert status["models"]["alpha"]["keys"]["SIGNATURE"] == "v1"
            held = client.status("alpha/held")
            assert (held["state"], held["pid"], held["ready"]) == ("running", old, True)
            assert ask(port).split()[1:3] == [str(old), "v1"]
            flag.unlink()
            kept = cli("set", "alpha", "SIGNATURE=bad", "--no-rollback", "-c", str(path))
            assert kept.returncode == 1, kept.stdout
            assert f"the previous one, pid {old}, serves on" in kept.stdout
            assert client.status()["models"]["alpha"]["keys"]["SIGNATURE"] == "bad"
            assert client.status("alpha/held")["pid"] == old
            assert ask(port).split()[2] == "v1"  # the keys it was started with
            fixed = cli("set", "alpha", "SIGNATURE=v2", "-c", str(path))
            assert fixed.returncode == 0, fixed.stdout
            assert not os.path.exists(f"/proc/{old}")
            assert ask(port).split()[2] == "v2"
        # The old instance answered through both failures: no connection refused or cut.
        assert hammer.failures == []
        assert hammer.answered_by(str(old)) and hammer.answered_by(ask(port).split()[1])
    finally:
        assert run.stop() == 0


def test_an_overlapping_restart_that_must_wait_for_a_key_waits_instead_of_failing(
    tmp_path: Path,
) -> None:
    path = held_stack(
        tmp_path, f'["{PY}", "{SVC}", "--listen"]', keys='MARKET = "us"', inject="DAY"
    )
    run = Run(path)
    try:
        run.event("alpha/held", "pending")
        first = cli("set", "alpha", "DAY=1", "-c", str(path))  # a key set at run time
        assert first.returncode == 0, first.stdout
        old = run.event("alpha/held", "running", ready=True)["pid"]
        gone = cli("set", "alpha", "--unset", "DAY", "--no-rollback", "-c", str(path))
        assert gone.returncode == 1, gone.stdout
        assert "FAILED alpha/held: pending: waiting for alpha DAY" in gone.stdout, gone.stdout
        assert "internal error" not in run.transcript()
        wait_until(lambda: not os.path.exists(f"/proc/{old}"), "the old instance stopped")
        back = cli("set", "alpha", "DAY=2", "-c", str(path))
        assert back.returncode == 0, back.stdout
        assert "restarted: alpha/held" in back.stdout
    finally:
        assert run.stop() == 0


def test_an_overlapping_set_that_times_out_rolls_back_to_the_instance_still_serving(
    tmp_path: Path,
) -> None:
    script = (
        f'if [ "$SIGNATURE" = v1 ]; then exec {PY} {SVC} --listen; fi; '
        f"exec {PY} {SVC} --listen --delay 30"
    )
    path = held_stack(tmp_path, f'["sh", "-c", \'{script}\']')
    run = Run(path)
    try:
        old = run.event("alpha/held", "running", ready=True)["pid"]
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        port = client.status("alpha/held")["port"]
        with Hammer(port) as hammer:
            mark = len(run.records)
            slow = cli("set", "alpha", "SIGNATURE=v2", "--timeout", "1", "-c", str(path))
            assert slow.returncode == 1, slow.stdout
            assert "rolled back: alpha/held not ready within 1 s" in slow.stdout, slow.stdout
            new = run.event("alpha/held", "running", after=mark)["pid"]
            assert not os.path.exists(f"/proc/{new}")  # the successor that never listened
            held = client.status("alpha/held")
            assert (held["state"], held["pid"], held["ready"]) == ("running", old, True)
            assert client.status()["models"]["alpha"]["keys"]["SIGNATURE"] == "v1"
            assert ask(port).split()[1:3] == [str(old), "v1"]
            starts = [r for r in run.records[mark:] if r.get("event") == "starting"]
            assert len(starts) == 1, starts  # the rollback started nothing: v1 serves on
        assert hammer.failures == []  # served throughout: the old one was never stopped
    finally:
        assert run.stop() == 0


@pytest.mark.parametrize(
    ("successor", "stop_timeout", "ready"),
    [("--delay 30", 1, False), ("", 3, True)],
    ids=["before the successor is ready", "after it, the old one still stopping"],
)
def test_a_stop_during_an_overlapping_restart_returns_once_both_instances_are_gone(
    tmp_path: Path, successor: str, stop_timeout: int, ready: bool
) -> None:
    # The first instance is slow to stop (it ignores SIGTERM until stop_timeout). A stop
    # while the successor starts (slow to listen), or once it is ready while the first
    # one is still stopping, is answered only when both went.
    script = (
        f'if [ "$SIGNATURE" = v1 ]; then exec {PY} {SVC} --listen --ignore-term; fi; '
        f"exec {PY} {SVC} --listen {successor}"
    )
    path = held_stack(tmp_path, f'["sh", "-c", \'{script}\']')
    path.write_text(path.read_text() + f"stop_timeout = {stop_timeout}\n")
    run = Run(path)
    try:
        old = run.event("alpha/held", "running", ready=True)["pid"]
        mark = len(run.records)
        queued = cli("set", "alpha", "SIGNATURE=v2", "--no-wait", "-c", str(path))
        assert queued.returncode == 0, queued.stdout + queued.stderr
        assert "restarting (not waited for): alpha/held" in queued.stdout, queued.stdout
        new = run.event("alpha/held", "running", ready=ready or None, after=mark)["pid"]
        assert new != old and os.path.exists(f"/proc/{old}")  # both alive: the overlap
        stopped = cli("stop", "alpha/held", "-c", str(path))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for pid in (old, new):
            assert not os.path.exists(f"/proc/{pid}"), f"stop returned with pid {pid} alive"
        assert (
            Client(str(tmp_path / ".supervise" / "control.sock")).status("alpha/held")["state"]
            == "stopped"
        )
    finally:
        assert run.stop() == 0


def test_a_unit_a_user_stops_while_a_set_restarts_it_stays_stopped(tmp_path: Path) -> None:
    """The set stops the unit (slowly: it ignores SIGTERM until stop_timeout); a user's
    `stop` meanwhile wins: the set does not start it again when its stop is done."""
    path = write_stack(
        tmp_path,
        f"""
[supervise]
coalesce = 0.0
[models.alpha]
K = "v1"
[processes.slow]
per_model = true
command = ["{PY}", "{SVC}", "--ignore-term"]
inject = ["K"]
start_seconds = 0.1
stop_timeout = 2
""",
    )
    run = Run(path)
    try:
        run.event("alpha/slow", "running", ready=True)
        mark = len(run.records)
        setting = cli_started("set", "alpha", "K=v2", "-c", str(path))
        run.event("alpha/slow", "stopping", after=mark)
        stopped = cli("stop", "alpha/slow", "-c", str(path))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        out, err = setting.communicate(timeout=30)
        assert setting.returncode == 0, out + err
        # The set answers once its start was handled: a start it sent would show now.
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        unit = client.status("alpha/slow")
        assert (unit["state"], unit["stop"], unit["pid"]) == ("stopped", "user", None), unit
        again = [r for r in run.records[mark:] if r.get("unit") == "alpha/slow"]
        assert "starting" not in [r.get("event") for r in again], again
    finally:
        assert run.stop() == 0


def test_a_set_while_a_restart_of_its_model_holds_it_answers_at_its_own_deadline(
    tmp_path: Path,
) -> None:
    """`restart alpha` waits (up to its timeout) for a unit that will not be ready; a
    `set` of alpha meanwhile answers when its own --timeout is up, and changes nothing."""
    flag = tmp_path / "never-ready"
    script = f"[ -e {flag} ] || echo listening; exec sleep 3600"
    path = write_stack(
        tmp_path,
        f"""
[models.alpha]
K = "v1"
[processes.u]
per_model = true
command = ["sh", "-c", "{script}"]
inject = ["K"]
ready = {{ log = "^listening", within = 60 }}
""",
    )
    run = Run(path)
    restarting = None
    try:
        run.event("alpha/u", "running", ready=True)
        flag.touch()
        mark = len(run.records)
        restarting = cli_started("restart", "alpha", "--timeout", "40", "-c", str(path))
        run.event("alpha/u", "running", after=mark)  # the new instance, never ready
        result = cli("set", "alpha", "K=v2", "--timeout", "1", "-c", str(path))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "not applied within 1 s" in result.stdout, result.stdout
        assert restarting.poll() is None  # the set did not wait for the restart
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        assert client.status()["models"]["alpha"]["keys"]["K"] == "v1"
    finally:
        if restarting is not None:
            restarting.kill()
            restarting.communicate()
        assert run.stop() == 0


def test_a_reload_removing_a_unit_during_its_overlapping_restart_answers_that_restart(
    tmp_path: Path,
) -> None:
    # The first instance listens at once, every later one only after 30 s: the restart's
    # successor is still starting when the reload removes the unit. The restart is
    # answered then, not at its timeout, and neither instance is left.
    flag = tmp_path / "first-done"
    script = (
        f"if [ ! -e {flag} ]; then touch {flag}; exec {PY} {SVC} --listen; fi; "
        f"exec {PY} {SVC} --listen --delay 30"
    )
    path = held_stack(tmp_path, f'["sh", "-c", \'{script}\']')
    run = Run(path)
    try:
        old = run.event("alpha/held", "running", ready=True)["pid"]
        mark = len(run.records)
        restart = cli_started("restart", "alpha/held", "--timeout", "120", "-c", str(path))
        try:
            new = run.event("alpha/held", "running", after=mark)["pid"]
            assert new != old and os.path.exists(f"/proc/{old}")  # both alive: the overlap
            other = f'[processes.other]\ncommand = ["{PY}", "{SVC}"]\n'
            path.write_text('[models.alpha]\nSIGNATURE = "v1"\n' + other)
            reloaded = cli("reload", "-c", str(path))
            assert reloaded.returncode == 0, reloaded
            out, err = restart.communicate(timeout=60)
        finally:
            if restart.poll() is None:
                restart.kill()
                restart.wait()
        assert restart.returncode == 1, (out, err)
        assert "alpha/held: stopped (removed from the stack)" in out + err, (out, err)
        for pid in (old, new):
            assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} outlived its unit"
    finally:
        assert run.stop() == 0


class Hammer:
    """A client connecting to `port` in a loop until the block ends; what answered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                reply = ask(self.port).split()
            except OSError as exc:
                self.failures.append(repr(exc))
                return
            if not reply:
                self.failures.append("empty answer")
                return
            self.seen.append((time.time(), reply[1]))

    def answered_by(self, pid: str) -> bool:
        return any(p == pid for _, p in self.seen)


def test_overlap_needs_a_held_socket(tmp_path: Path) -> None:
    path = write_stack(tmp_path, "[processes.a]\ncommand = 'x'\nport = 'auto'\noverlap = true\n")
    result = cli("check", "-c", str(path))
    assert result.returncode == 2
    assert "overlap = true needs socket = true" in result.stderr


def test_pydantic_never_enters_the_running_supervisor_not_even_for_a_reload(
    stack: tuple[Run, Client],
) -> None:
    """The stack is validated in a child at start and in a new interpreter at a reload:
    the resident supervisor never maps pydantic's compiled core (~9 MiB less RSS)."""
    run, client = stack

    def maps_pydantic() -> bool:
        return "pydantic_core" in Path(f"/proc/{run.proc.pid}/maps").read_text()

    assert not maps_pydantic()
    mark = len(run.records)
    run.stack.write_text(run.stack.read_text().replace('"beta-v1"', '"beta-v2"'))
    run.event("beta/trade", "running", ready=True, after=mark)
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 0, result.stderr
    assert client.status()["config_error"] is None
    assert not maps_pydantic()
