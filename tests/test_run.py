"""`supervise run` with real processes: gating, injection, lifecycle, trees, output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from supervisor.socket_registry import registry_entry
from tests.helpers import PY, ROOT, SVC, Run, cli, pid_alive, wait_until, write_stack

TWO_MODELS = f"""
[models.alpha]
MARKET = "us"
API_TOKEN = "tok-alpha-secret"
[models.beta]
MARKET = "cn"

[processes.init]
per_model = true
oneshot = true
command = ["{PY}", "{SVC}", "--publish", "SIGNATURE=${{model}}-v1", "--sleep", "0.3"]
publishes = ["SIGNATURE"]

[processes.trade]
per_model = true
command = ["{PY}", "{SVC}", "--dump", "{{out}}", "--listen"]
port = "auto"
inject = ["SIGNATURE", "MARKET"]
depends_on = {{ init = "completed" }}
ready = {{ tcp = "${{port}}" }}

[processes.agent]
per_model = true
command = ["{PY}", "{SVC}", "--dump", "{{out}}"]
inject = ["SIGNATURE"]
depends_on = {{ trade = "ready" }}
env = {{ TRADE_URL = "http://127.0.0.1:${{trade.port}}/mcp" }}
"""


def dumped(out: Path, unit: str) -> dict[str, str]:
    path = out / f"{unit.replace('/', '@')}.json"
    wait_until(path.exists, f"{path.name} written")
    result: dict[str, str] = json.loads(path.read_text())
    return result


def test_each_models_servers_start_after_its_init_published_with_only_its_own_keys(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stack = write_stack(tmp_path, TWO_MODELS.replace("{out}", str(out)))
    run = Run(stack)
    try:
        for model in ("alpha", "beta"):
            run.event(f"{model}/agent", "running", ready=True)
        records = run.records
        for model in ("alpha", "beta"):
            init_done = records.index(run.event(f"{model}/init", "exited"))
            trade_start = records.index(run.event(f"{model}/trade", "starting"))
            trade_ready = records.index(run.event(f"{model}/trade", "running", ready=True))
            agent_start = records.index(run.event(f"{model}/agent", "starting"))
            assert init_done < trade_start < trade_ready < agent_start
            pending = run.event(f"{model}/trade", "pending")
            assert pending["reason"] == f"waiting for {model}/init to complete"

        alpha, beta = dumped(out, "alpha/trade"), dumped(out, "beta/trade")
        assert (alpha["SIGNATURE"], alpha["MARKET"]) == ("alpha-v1", "us")
        assert (beta["SIGNATURE"], beta["MARKET"]) == ("beta-v1", "cn")
        assert alpha["SUPERVISE_MODEL"] == "alpha" and alpha["SUPERVISE_UNIT"] == "alpha/trade"
        assert "API_TOKEN" not in alpha  # not injected, so not given
        assert not any("alpha" in v for k, v in beta.items() if k != "SUPERVISE_TEST_TOKEN")
        agent = dumped(out, "beta/agent")
        assert agent["TRADE_URL"] == f"http://127.0.0.1:{beta['PORT']}/mcp"
        assert "MARKET" not in agent
        env_file = Path(alpha["SUPERVISE_ENV"])
        for directory in (env_file.parent, env_file.parent.parent, env_file.parents[2]):
            assert directory.stat().st_mode & 0o777 == 0o700, directory
        assert os.stat(alpha["SUPERVISE_ENV"]).st_mode & 0o777 == 0o600
    finally:
        assert run.stop() == 0
    # Stop reverses the start order within each model.
    stops = [r["unit"] for r in run.events() if r["event"] == "stopped"]
    for model in ("alpha", "beta"):
        assert stops.index(f"{model}/agent") < stops.index(f"{model}/trade")


def test_unit_whose_injected_key_has_no_source_never_starts(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[models.alpha]
MARKET = "us"
[processes.trade]
per_model = true
command = ["{PY}", "{SVC}", "--sleep", "60"]
inject = ["SIGNATURE"]
[processes.other]
command = ["{PY}", "{SVC}", "--sleep", "60"]
""",
    )
    run = Run(stack)
    try:
        pending = run.event("alpha/trade", "pending")
        assert pending["reason"] == "waiting for alpha SIGNATURE"
        run.event("other", "running", ready=True)
        assert not [r for r in run.events("alpha/trade") if r["event"] == "starting"]
        assert any("alpha/trade needs alpha SIGNATURE" in r.get("line", "") for r in run.records)
    finally:
        assert run.stop() == 0


def test_exit_78_fails_at_once_with_the_last_stderr_line_and_stops_the_stack(
    tmp_path: Path,
) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.trade]
command = ["{PY}", "{SVC}", "--stderr", "trade: SIGNATURE environment variable is not set",
           "--sleep", "0", "--exit", "78"]
[processes.math]
command = ["{PY}", "{SVC}", "--sleep", "60"]
""",
    )
    run = Run(stack)
    failed = run.event("trade", "failed")
    assert failed["reason"] == "trade: SIGNATURE environment variable is not set"
    assert failed["exit_code"] == 78
    assert run.wait() == 1
    assert not [r for r in run.events("trade") if r["event"] == "backoff"]


def test_crash_loop_backs_off_then_fails(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.crashy]
command = ["{PY}", "{SVC}", "--sleep", "0", "--exit", "3"]
backoff_initial = 0.05
max_failures = 3
""",
    )
    run = Run(stack)
    failed = run.event("crashy", "failed")
    assert failed["reason"].startswith("4 failures within 60 s; last: exited 3")
    delays = [
        float(r["reason"].split("restarting in ")[1].split(" s")[0])
        for r in run.events("crashy")
        if r["event"] == "backoff"
    ]
    assert len(delays) == 3
    assert delays[0] < delays[1] < delays[2]  # doubling beats ±20 % jitter
    assert run.wait() == 1


def test_optional_unit_failure_keeps_the_rest_running(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.flaky]
command = ["{PY}", "{SVC}", "--sleep", "0", "--exit", "1"]
restart = "never"
required = false
[processes.needs_flaky]
command = ["{PY}", "{SVC}"]
depends_on = {{ flaky = "ready" }}
[processes.steady]
command = ["{PY}", "{SVC}", "--sleep", "60"]
""",
    )
    run = Run(stack)
    try:
        run.event("flaky", "failed")
        run.event("steady", "running", ready=True)
        pending = run.event("needs_flaky", "pending", timeout=5)
        wait_until(
            lambda: any(r.get("reason") == "flaky failed" for r in run.events("needs_flaky")),
            "needs_flaky blocked",
        )
        assert run.proc.poll() is None
    finally:
        assert run.stop() == 0
    assert pending


def test_run_exits_0_when_only_finished_oneshots_are_left(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.migrate]
oneshot = true
command = ["{PY}", "{SVC}", "--sleep", "0"]
[processes.report]
oneshot = true
command = ["{PY}", "-c", "import sys; sys.stdout.write('no newline at the end')"]
depends_on = {{ migrate = "completed" }}
""",
    )
    run = Run(stack)
    assert run.wait() == 0
    assert "no newline at the end" in run.lines("report")


def test_the_runtime_directory_is_private_and_gone_after_the_stop(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    stack = write_stack(
        tmp_path, f'[processes.web]\ncommand = ["{PY}", "{SVC}", "--sleep", "60"]\n'
    )
    run = Run(stack, env={"XDG_RUNTIME_DIR": str(runtime)})
    try:
        run.wait_for(lambda r: r.get("event") == "running", "web running")
        made = [p for p in runtime.iterdir() if p.name.startswith("supervise-")]
        assert len(made) == 1, made
        assert made[0].stat().st_mode & 0o777 == 0o700
    finally:
        assert run.stop() == 0
    assert not made[0].exists()


def test_sigterm_takes_down_stubborn_trees(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stack = write_stack(
        tmp_path,
        f"""
[processes.setsid_tree]
command = ["{PY}", "{SVC}", "--dump", "{out}", "--tree", "setsid", "--ignore-term"]
stop_timeout = 0.5
[processes.group_tree]
command = ["{PY}", "{SVC}", "--dump", "{out}", "--tree", "group", "--ignore-term"]
stop_timeout = 0.5
""",
    )
    run = Run(stack)
    pids = []
    for unit in ("setsid_tree", "group_tree"):
        run.event(unit, "running", ready=True)
        pids.append(run.pid(unit))
        grandchild = out / f"{unit}.grandchild"
        wait_until(grandchild.exists, f"{unit} grandchild pid")
        pids.append(int(grandchild.read_text()))
    assert all(pid_alive(p) for p in pids)
    assert run.stop() == 0
    assert not [p for p in pids if pid_alive(p)]


def test_sigkill_of_the_supervisor_leaves_nothing_alive(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stack = write_stack(
        tmp_path,
        f"""
[processes.a]
command = ["{PY}", "{SVC}", "--dump", "{out}", "--tree", "setsid", "--ignore-term"]
[processes.b]
command = ["{PY}", "{SVC}", "--dump", "{out}", "--tree", "group"]
""",
    )
    run = Run(stack)
    pids = []
    for unit in ("a", "b"):
        run.event(unit, "running", ready=True)
        pids.append(run.pid(unit))
        grandchild = out / f"{unit}.grandchild"
        wait_until(grandchild.exists, f"{unit} grandchild pid")
        pids.append(int(grandchild.read_text()))
    run.kill()
    wait_until(
        lambda: not [p for p in pids if pid_alive(p)], "every unit and grandchild gone", timeout=10
    )


def test_after_kill_9_the_guard_removes_the_control_socket_and_its_registry_entry(
    tmp_path: Path,
) -> None:
    stack = write_stack(tmp_path, f'[processes.a]\ncommand = ["{PY}", "{SVC}"]\n')
    run = Run(stack)
    run.event("a", "running", ready=True)
    sock = tmp_path / ".supervise" / "control.sock"
    entry = registry_entry(stack)
    assert entry is not None
    assert sock.is_socket()
    assert os.readlink(entry) == str(sock)
    run.kill()
    wait_until(lambda: not sock.exists() and not os.path.islink(entry), "socket and entry removed")


def test_a_second_supervisor_of_the_same_file_on_another_socket_leaves_c_file_to_the_first(
    tmp_path: Path,
) -> None:
    """`-c FILE` keeps reaching the supervisor that ran FILE first, while the second (told
    how it can be reached) runs and after it stops; the second is reached by its socket."""
    stack = write_stack(
        tmp_path,
        f'[supervise]\ncontrol_socket = "${{SOCK_DIR}}/control.sock"\n'
        f'[processes.a]\ncommand = ["{PY}", "{SVC}"]\n',
    )
    first_sock, second_sock = tmp_path / "one" / "control.sock", tmp_path / "two" / "control.sock"
    first = Run(stack, env={"SOCK_DIR": str(first_sock.parent)})
    second = None
    try:
        first.event("a", "running", ready=True)
        second = Run(stack, env={"SOCK_DIR": str(second_sock.parent)})
        second.event("a", "running", ready=True)

        def supervisor_pid(*args: str, env: dict[str, str] | None = None) -> int:
            result = cli("status", "--json", *args, env=env)
            assert result.returncode == 0, result.stderr
            pid: int = json.loads(result.stdout)["supervisor"]["pid"]
            return pid

        told = second.wait_for(
            lambda r: "run by another supervisor too" in r.get("line", ""), "note"
        )
        assert f"SUPERVISE_SOCKET={second_sock}" in told["line"]
        assert supervisor_pid("-c", str(stack)) == first.proc.pid
        assert supervisor_pid(env={"SUPERVISE_SOCKET": str(second_sock)}) == second.proc.pid
        assert second.stop() == 0
        assert supervisor_pid("-c", str(stack)) == first.proc.pid
    finally:
        if second is not None and second.proc.poll() is None:
            second.stop()
        assert first.stop() == 0
    entry = registry_entry(stack)
    assert entry is not None and not os.path.lexists(entry)


def test_a_stop_kills_a_setsid_child_with_no_environment_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    """Its parent (the leader) dies of the group's SIGTERM, so it is re-parented; it left
    the session and carries no marker. The stop still knows it from before the signal,
    and kills it once `stop_timeout` is up (it outlived the stop, and the supervisor)."""
    pidfile = tmp_path / "escaper.pid"
    inner = tmp_path / "escaper.sh"
    inner.write_text(f"echo $$ > {pidfile}; trap '' TERM; exec sleep 300\n")
    script = f"setsid /usr/bin/env -i /bin/sh {inner} & exec sleep 300"
    stack = write_stack(
        tmp_path,
        f'[processes.u]\ncommand = ["sh", "-c", "{script}"]\n'
        "stop_timeout = 1\nstart_seconds = 0.2\n",
    )
    run = Run(stack)
    escaper = None
    try:
        leader = run.event("u", "running", ready=True)["pid"]
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "its pid")
        escaper = int(pidfile.read_text())
        assert escaper != leader and pid_alive(escaper)
        stopped = cli("stop", "u", "-c", str(stack))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        wait_until(lambda: not pid_alive(escaper), "the escaped child gone", timeout=5)
    finally:
        if escaper is not None and pid_alive(escaper):
            os.kill(escaper, signal.SIGKILL)
        assert run.stop() == 0


ADOPTER = """
import ctypes, json, os, signal, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the orphans come here
stack, rt = sys.argv[1], sys.argv[2]
env = {**os.environ, "XDG_RUNTIME_DIR": rt}
sv = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "-c", stack,
                       "--log-format", "json"], stdout=subprocess.PIPE, text=True, env=env)
for line in sv.stdout:
    if json.loads(line).get("ready"):
        break
os.kill(sv.pid, signal.SIGKILL)
def runtime_dirs():  # the supervisor's own (not the registry of sockets beside it)
    return [e for e in os.listdir(rt) if e.startswith("supervise-")]
# Reap nothing for a while: the killed units stay zombies in their process groups.
deadline = time.monotonic() + 2.5
while runtime_dirs() and time.monotonic() < deadline:
    time.sleep(0.01)
unreaped = 0
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            stat = open(f"/proc/{entry}/stat", "rb").read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == os.getpid() and fields[0] == b"Z":
            unreaped += 1
left = runtime_dirs()
sv.stdout.close()
end = time.monotonic() + 10
while time.monotonic() < end:  # now reap everything that came here
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        time.sleep(0.01)
print(json.dumps({"left": left, "unreaped": unreaped}))
"""


def test_after_kill_9_the_guard_cleans_up_while_the_units_are_still_unreaped(
    tmp_path: Path,
) -> None:
    """Whoever adopts the killed units may reap them late (a busy or sloppy PID 1): their
    zombies must not keep the guard from removing the runtime directory at once."""
    runtime = tmp_path / "rt"
    runtime.mkdir()
    adopter = tmp_path / "adopter.py"
    adopter.write_text(ADOPTER)
    stack = write_stack(
        tmp_path,
        f"""
[models.alpha]
SIGNATURE = "alpha-v1"
[processes.svc]
per_model = true
command = ["{PY}", "{SVC}", "--tree", "group"]
inject = ["SIGNATURE"]
ready = {{ log = "^up " }}
""",
    )
    result = subprocess.run(
        [PY, str(adopter), str(stack), str(runtime)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["unreaped"] >= 1  # the situation under test: zombies left in the groups
    assert found["left"] == []  # and the runtime directory (published keys) is gone


def test_a_30_mb_line_flood_is_drained_and_the_unit_goes_on(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.flood]
command = ["{PY}", "{SVC}", "--flood", "{30 * 1024 * 1024}", "--sleep", "60"]
""",
    )
    run = Run(stack)
    try:
        run.line("flood", "flood done", timeout=60)
        pieces = [line for line in run.lines("flood") if line.startswith("x")]
        assert sum(len(p) for p in pieces) == 30 * 1024 * 1024
        assert max(len(p) for p in pieces) <= 16 * 1024
    finally:
        assert run.stop() == 0


def test_second_interrupt_forces_exit_130(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.stubborn]
command = ["{PY}", "{SVC}", "--ignore-term"]
stop_signal = "SIGTERM"
stop_timeout = 60
""",
    )
    run = Run(stack)
    pid = run.pid("stubborn")
    run.event("stubborn", "running", ready=True)
    run.signal(signal.SIGINT)
    run.event("stubborn", "stopping")
    run.signal(signal.SIGINT)
    assert run.wait() == 130
    wait_until(lambda: not pid_alive(pid), "stubborn unit gone")


def test_a_shutdown_past_its_budget_kills_what_is_left_and_still_exits_0(
    tmp_path: Path,
) -> None:
    # One SIGTERM is a clean stop, even when a unit outlasts shutdown_timeout and has to
    # be killed; 130 is only for a forced stop (a second Ctrl-C).
    stack = write_stack(
        tmp_path,
        f"""
[supervise]
shutdown_timeout = 1

[processes.stubborn]
command = ["{PY}", "{SVC}", "--ignore-term"]
stop_timeout = 60
""",
    )
    run = Run(stack)
    pid = run.pid("stubborn")
    run.event("stubborn", "running", ready=True)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert not pid_alive(pid)
    assert "shutdown took longer than 1 s: killing what is left" in run.transcript()


def test_a_followed_log_gets_the_last_lines_and_ends_cleanly_with_the_stack(
    tmp_path: Path,
) -> None:
    stack = write_stack(tmp_path, f'[processes.web]\ncommand = ["{PY}", "{SVC}"]\n')
    run = Run(stack)
    follower = None
    try:
        run.event("web", "running", ready=True)
        follower = subprocess.Popen(
            [PY, "-m", "supervisor", "logs", "-f", "-c", str(stack)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert follower.stdout is not None
        for line in follower.stdout:  # the recent lines first, then it follows
            if "web | up" in line:
                break
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        out, err = follower.communicate(timeout=30)
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()
        run.stop()
    assert follower.returncode == 0, err
    assert "closed the connection" not in err
    assert "web stopped" in out, out  # the stop the follower saw before its stream ended


def test_secret_values_are_masked_in_output(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[env]
SERVICE_PASSWORD = "hunter2-long"
[processes.talker]
oneshot = true
command = ["{PY}", "-c", "import os; print('pw is', os.environ['SERVICE_PASSWORD'])"]
""",
    )
    run = Run(stack)
    assert run.wait() == 0
    assert "pw is ***" in run.lines("talker")
    assert "hunter2-long" not in json.dumps(run.records)


def test_a_secret_with_a_quote_and_a_non_ascii_letter_is_masked_in_json_events_too(
    tmp_path: Path,
) -> None:
    """The reason of a `failed` event quotes the unit's last stderr line; JSON's escapes
    (`\\"`, `\\u00f6`) must not hide the secret in it from the mask, on stdout and in
    the JSON log file."""
    secret = 'pa"ss-w\u00f6rd-long'
    say = "import os, sys; print('bad', os.environ['SERVICE_PASSWORD'], file=sys.stderr); exit(78)"
    stack = write_stack(
        tmp_path,
        f"""
[supervise]
log_format = "json"
log_dir = "logs"
[env]
SERVICE_PASSWORD = '{secret}'
[processes.talker]
command = ["{PY}", "-c", "{say}"]
""",
    )
    run = Run(stack)
    assert run.wait() == 1  # a required global unit failed
    failed = [r for r in run.events("talker") if r["event"] == "failed"]
    assert [r["reason"] for r in failed] == ["bad ***"], failed
    assert secret not in json.dumps(run.records, ensure_ascii=False)
    written = (tmp_path / "logs" / "supervise.log").read_text()
    lines = [json.loads(line) for line in written.splitlines()]
    assert secret not in json.dumps(lines, ensure_ascii=False)
    assert any("bad ***" in json.dumps(line) for line in lines)


def test_an_exec_probe_that_prints_as_it_passes_passes(tmp_path: Path) -> None:
    """`pg_isready` and `redis-cli ping` print: the probe's output goes to /dev/null (a
    closed pipe killed the probe with SIGPIPE at its first write)."""
    stack = write_stack(
        tmp_path,
        f"""
[processes.db]
command = ["{PY}", "{SVC}"]
ready = {{ exec = "sh -c 'sleep 0.2; echo accepting connections; echo and more >&2'" }}
""",
    )
    run = Run(stack)
    try:
        run.event("db", "running", ready=True)
    finally:
        assert run.stop() == 0


def test_a_stack_file_and_an_env_file_saved_with_a_bom_read_as_without(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (Notepad's) is not part of the first key or table."""
    (tmp_path / ".env").write_bytes(b"\xef\xbb\xbfGREETING=hello\n")
    stack = tmp_path / "supervise.toml"
    text = '[processes.talker]\noneshot = true\ncommand = ["sh", "-c", "echo got $GREETING"]\n'
    stack.write_bytes(b"\xef\xbb\xbf" + text.encode())
    run = Run(stack)
    assert run.wait() == 0, run.explain()
    assert "got hello" in run.lines("talker")


def test_readiness_by_http_log_exec_and_notify(tmp_path: Path) -> None:
    notify = tmp_path / "notify.py"
    notify.write_text(
        "import os, socket, time\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(b'STATUS=warming\\nREADY=1', os.environ['NOTIFY_SOCKET'])\n"
        "time.sleep(60)\n"
    )
    stack = write_stack(
        tmp_path,
        f"""
[processes.web]
command = "{PY} -m http.server ${{port}} --bind 127.0.0.1"
port = "auto"
ready = {{ http = "http://127.0.0.1:${{port}}/" }}
[processes.logger]
command = ["{PY}", "{SVC}", "--sleep", "60"]
ready = {{ log = "^up \\\\d+$" }}
[processes.checked]
command = ["{PY}", "{SVC}", "--dump", "{tmp_path}", "--sleep", "60"]
ready = {{ exec = "test -f {tmp_path}/checked.json" }}
[processes.notifier]
command = ["{PY}", "{notify}"]
ready = {{ notify = true }}
[processes.never]
command = ["{PY}", "{SVC}", "--sleep", "60"]
ready = {{ log = "will not appear", within = 0.5 }}
restart = "never"
required = false
""",
    )
    run = Run(stack)
    try:
        for unit in ("web", "logger", "notifier", "checked"):
            run.event(unit, "running", ready=True)
        failed = run.event("never", "failed")
        assert failed["reason"] == "not ready within 0.5 s (log probe)"
    finally:
        assert run.stop() == 0


def test_tcp_readiness_sees_exactly_the_ports_a_loopback_client_could_reach() -> None:
    """The kernel's answer over netlink and /proc/net/tcp (the fallback) agree: loopback
    and wildcard listeners on IPv4 and IPv6 count; another address, a bound socket that
    does not listen and a connected one do not; asked for some ports, just those."""
    import socket

    from supervisor.osproc import listening

    reached = [
        socket.create_server(("127.0.0.1", 0)),
        socket.create_server(("0.0.0.0", 0)),
        socket.create_server(("::1", 0), family=socket.AF_INET6),
        socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True),
    ]
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.listen()
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    client = socket.create_connection(reached[0].getsockname()[:2])
    try:
        ports = {s.getsockname()[1] for s in reached}
        not_reached = {other.getsockname()[1], bound.getsockname()[1], client.getsockname()[1]}
        from_kernel, from_proc = listening._from_netlink(), listening._from_proc()
        assert ports <= from_kernel and not not_reached & from_kernel
        assert ports <= from_proc and not not_reached & from_proc
        assert listening.listening_ports() >= ports
        # Asked for some ports, the kernel's filter answers for those alone.
        some = sorted(ports)[:2]
        assert listening._from_netlink([*some, *not_reached]) == set(some)
        assert listening.listening_ports([*some, *not_reached]) == set(some)
        assert listening._from_netlink(list(not_reached)) == set()
    finally:
        for s in (*reached, other, bound, client):
            s.close()


def test_procfile_runs_with_honcho_ports_and_an_exit_0_tears_nothing_down(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("GREETING=hello from dotenv\n")
    (tmp_path / "Procfile").write_text(
        "# a comment\n\n"
        'web: echo "web on $PORT $GREETING" && exec sleep 60\n'
        'worker: echo "worker on $PORT"\n'
        'clock: echo "clock on $PORT" && exec sleep 60\n'
    )
    run = Run(tmp_path / "Procfile", env={"PORT": ""})
    try:
        run.line("web", "web on 5000 hello from dotenv")
        run.line("worker", "worker on 5100")
        run.line("clock", "clock on 5200")
        run.event("worker", "exited")
        run.event("web", "running", ready=True)
        assert run.proc.poll() is None
    finally:
        assert run.stop() == 0


def test_procfile_nonzero_exit_stops_everything(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: exec sleep 60\nbroken: exit 4\n")
    run = Run(tmp_path / "Procfile")
    run.event("broken", "failed")
    assert run.wait() == 4  # the failed process's own code, as honcho exits
    assert run.event("web", "stopped")


def test_pyproject_tool_table_is_a_stack(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.supervise.processes.hello]\noneshot = true\n'
        f'command = ["{PY}", "-c", "print(42)"]\n'
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hello: oneshot" in result.stdout
    run = Run(tmp_path / "pyproject.toml")
    assert run.wait() == 0
    assert run.lines("hello") == ["42"]


def test_command_not_found_fails_with_a_clear_reason(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "[processes.ghost]\ncommand = 'no-such-binary-xyz --flag'\n")
    run = Run(stack)
    failed = run.event("ghost", "failed")
    assert "cannot execute 'no-such-binary-xyz'" in failed["reason"]
    assert run.wait() == 1


def test_the_supervisor_does_not_leak_its_own_unit_variables(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stack = write_stack(
        tmp_path,
        f"""
[processes.inner]
oneshot = true
command = ["{PY}", "{SVC}", "--dump", "{out}", "--sleep", "0"]
""",
    )
    run = Run(stack, env={"SUPERVISE_MODEL": "outer", "NOTIFY_SOCKET": "/nope"})
    assert run.wait() == 0
    env = dumped(out, "inner")
    assert "SUPERVISE_MODEL" not in env and "NOTIFY_SOCKET" not in env
    assert env["SUPERVISE_UNIT"] == "inner"
    assert sys.executable


def test_a_blocked_stdout_never_blocks_units_and_drops_are_counted(tmp_path: Path) -> None:
    marker = tmp_path / "after-flood"
    stack = write_stack(
        tmp_path,
        f"""
[processes.chatty]
oneshot = true
command = ["{PY}", "-c",
           "[print('line', i) for i in range(200_000)]; open('{marker}', 'w')"]
""",
    )
    proc = subprocess.Popen(
        [PY, "-m", "supervisor", "run", "-c", str(stack)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Nobody reads the supervisor's stdout: its pipe fills at 64 KiB, yet the unit
        # finishes printing 200,000 lines.
        wait_until(marker.exists, "the unit to get past its output", timeout=60)
        assert proc.stdout is not None
        output = proc.stdout.read().decode()
        assert proc.wait(30) == 0
        assert "output too slow: dropped" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
