"""Ports: a fixed port belongs to one unit (`check` refuses one given to several), and a
held port (`socket = true`) that another program holds is a config error at `run` and at
`reload` — exit 2, one line naming the unit, the key and the port, nothing started and,
at a reload, nothing changed. Real processes and real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.client import Client
from tests.conftest import processes_with_token
from tests.helpers import PY, SVC, Run, cli, cli_started, wait_until, write_stack

SLEEPER = f'["{PY}", "{SVC}", "--sleep", "3600"]'
LISTENER = f'["{PY}", "{SVC}", "--listen"]'


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another program (this test) listens on until teardown."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]
    finally:
        holder.close()


def free_ports(count: int) -> list[int]:
    """Loopback ports nobody listens on now, for a stack to hold."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def ask(port: int) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.makefile().readline().split()


def test_check_and_run_refuse_a_fixed_port_given_to_two_processes(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.web]
command = {SLEEPER}
port = 39981

[processes.api]
command = {SLEEPER}
port = 39981
""",
    )
    for verb in ("check", "run"):
        result = cli(verb, "-c", str(stack), timeout=30)
        assert result.returncode == 2, (verb, result)
        assert (
            f"{stack}:8: processes.api.port: port 39981 is given to web and api; a port can "
            'belong to one unit: give each process its own port, or use port = "auto"'
        ) in result.stderr, (verb, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_unit_on_the_supervisors_own_http_port_is_refused(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    stack = write_stack(
        tmp_path,
        f"""
[supervise]
http = "127.0.0.1:${{HEALTH_PORT}}"

[processes.web]
command = {SLEEPER}
port = {port}
""",
    )
    for verb in ("check", "run"):
        result = cli(verb, "-c", str(stack), env={"HEALTH_PORT": str(port)}, timeout=30)
        assert result.returncode == 2, (verb, result)
        assert (
            f"{stack}:7: processes.web.port: port {port} is the supervisor's own health and "
            f"status port ([supervise] http = '127.0.0.1:{port}'); give web another port"
        ) in result.stderr, (verb, result.stderr)


def test_a_probe_or_reference_naming_another_units_port_is_not_a_conflict(
    tmp_path: Path,
) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.web]
command = {SLEEPER}
port = 39982

[processes.watcher]
command = {SLEEPER}
env = {{ WEB = "127.0.0.1:${{web.port}}" }}
ready = {{ tcp = "39982" }}

[processes.other]
command = {SLEEPER}
port = "auto"

[processes.another]
command = {SLEEPER}
port = "auto"
""",
    )
    result = cli("check", "-c", str(stack), timeout=30)
    assert result.returncode == 0, result
    assert "web: service; port 39982" in result.stdout


def test_check_refuses_a_per_model_fixed_port_expanded_to_several_models(
    tmp_path: Path,
) -> None:
    text = f"""
[models.a]
SIGNATURE = "a"
[models.b]
SIGNATURE = "b"

[processes.p]
command = {SLEEPER}
per_model = true
port = 39983
socket = true
"""
    stack = write_stack(tmp_path, text)
    result = cli("check", "-c", str(stack), timeout=30)
    assert result.returncode == 2, result
    assert (
        f"{stack}:10: processes.p.port: port 39983 is given to a/p and b/p; a port can "
        'belong to one unit: use port = "auto"'
    ) in result.stderr, result.stderr
    assert "${p.port}" in result.stderr and "--model" in result.stderr
    # "auto" gives each unit its own port; one model per supervisor has one unit on it.
    stack.write_text(text.replace("port = 39983", 'port = "auto"'))
    assert cli("check", "-c", str(stack), timeout=30).returncode == 0
    (port,) = free_ports(1)
    stack.write_text(text.replace("39983", str(port)).replace(SLEEPER, LISTENER))
    run = Run(stack, "--model", "a")
    try:
        run.event("a/p", "running")
        assert ask(port)[0] == "a/p"
    finally:
        assert run.stop() == 0


def test_run_with_a_held_port_another_program_holds_exits_2_and_leaves_nothing_running(
    tmp_path: Path, taken: int, orphan_net: str
) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[models.a]
SIGNATURE = "a"

[processes.first]
command = {SLEEPER}

[processes.p]
command = {LISTENER}
per_model = true
port = {taken}
socket = true
""",
    )
    run = Run(stack)
    assert run.wait() == 2, run.explain()
    message = (
        f"{stack}: processes.p.port: cannot listen on 127.0.0.1:{taken} for unit a/p: "
        "address already in use (another program holds it)"
    )
    assert any(message in line for line in run.stderr), run.stderr
    assert not [line for line in run.stderr if "Traceback" in line], run.stderr
    assert not [r for r in run.records if r.get("event") in ("starting", "running")]
    # Nothing it started lives on: no unit, no guard, no validator.
    wait_until(lambda: not processes_with_token(orphan_net), "no process left", timeout=5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Run, Client]]:
    run = Run(
        write_stack(
            tmp_path,
            f"""
[processes.web]
command = {LISTENER}
port = "auto"
ready = {{ tcp = "${{port}}" }}
""",
        )
    )
    try:
        run.event("web", "running", ready=True)
        yield run, Client(str(tmp_path / ".supervise" / "control.sock"))
    finally:
        assert run.stop() == 0


def test_reload_adding_a_unit_whose_held_port_is_taken_is_refused_and_changes_nothing(
    running: tuple[Run, Client], taken: int
) -> None:
    run, client = running
    good = run.stack.read_text()
    web = client.status("web")
    run.stack.write_text(
        good + f"\n[processes.p]\ncommand = {LISTENER}\nport = {taken}\nsocket = true\n"
    )
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 2, result
    message = (
        f"{run.stack}: processes.p.port: cannot listen on 127.0.0.1:{taken} for unit p: "
        "address already in use (another program holds it)"
    )
    assert message in result.stderr, result.stderr
    assert "internal error" not in result.stderr + result.stdout
    status = client.status()
    assert [u["unit"] for u in status["units"]] == ["web"]
    assert client.status("web")["pid"] == web["pid"]
    assert ask(web["port"])[0] == "web"
    assert message in (status["config_error"] or "")
    shown = cli("status", "-c", str(run.stack))
    assert "config (the stack runs on the last good file):" in shown.stdout, shown
    assert message in shown.stdout


def test_a_held_port_moved_to_a_new_unit_by_a_reload_stays_held(
    running: tuple[Run, Client], tmp_path: Path
) -> None:
    run, client = running
    good = run.stack.read_text()
    (port,) = free_ports(1)
    old = f"\n[processes.old]\ncommand = {LISTENER}\nport = {port}\nsocket = true\n"
    run.stack.write_text(good + old)
    assert cli("reload", "-c", str(run.stack)).returncode == 0
    wait_until(lambda: client.status("old")["ready"], "old ready")
    assert ask(port)[0] == "old"
    # One reload removes `old` and adds `new` on the same port: the socket the stack
    # holds passes from one to the other, the reload is not refused as "in use".
    run.stack.write_text(good + old.replace("[processes.old]", "[processes.new]"))
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 0, result
    wait_until(lambda: client.status("new")["ready"], "new ready")
    assert ask(port)[0] == "new"
    assert not client.status()["config_error"]


def test_a_reload_that_swaps_two_held_ports_hands_each_socket_over(
    running: tuple[Run, Client],
) -> None:
    run, client = running
    good = run.stack.read_text()
    first, second = free_ports(2)

    def held(a: int, b: int) -> str:
        return "".join(
            f"\n[processes.{name}]\ncommand = {LISTENER}\nport = {port}\nsocket = true\n"
            for name, port in (("a", a), ("b", b))
        )

    run.stack.write_text(good + held(first, second))
    assert cli("reload", "-c", str(run.stack)).returncode == 0
    wait_until(lambda: client.status("b")["ready"], "b ready")
    assert (ask(first)[0], ask(second)[0]) == ("a", "b")
    run.stack.write_text(good + held(second, first))
    result = cli("reload", "-c", str(run.stack))
    assert result.returncode == 0, result
    assert "restarted: a, b" in result.stdout, result.stdout
    assert (ask(first)[0], ask(second)[0]) == ("b", "a")
    assert (client.status("a")["port"], client.status("b")["port"]) == (second, first)


def test_launching_a_model_onto_a_fixed_port_another_unit_has_is_refused(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    stack = write_stack(
        tmp_path,
        f"""
[models.a]
SIGNATURE = "a"

[processes.p]
command = {LISTENER}
per_model = true
port = {port}
ready = {{ log = "^listening" }}
""",
    )
    run = Run(stack)
    try:
        pid = run.event("a/p", "running", ready=True)["pid"]
        result = cli("launch", "b", "SIGNATURE=b", "-c", str(stack))
        assert result.returncode == 1, result
        assert (
            f"model 'b' cannot be launched: b/p would listen on port {port}, which a/p has; "
            f'a process run for several models needs port = "auto" (processes.p.port in {stack})'
        ) in result.stderr, result.stderr
        status = Client(str(tmp_path / ".supervise" / "control.sock")).status()
        assert [u["unit"] for u in status["units"]] == ["a/p"]
        assert "b" not in status["models"]
        assert status["units"][0]["pid"] == pid
    finally:
        assert run.stop() == 0


def test_a_rollback_whose_old_held_port_was_taken_meanwhile_says_so_and_settles(
    running: tuple[Run, Client],
) -> None:
    """A reload moves a held port and its new instance fails; in between another program
    took the old port. The rollback cannot give it back: the answer says so, naming the
    unit and the port, every other unit is untouched, and nothing is left `changing`."""
    run, client = running
    good = run.stack.read_text()
    old_port, new_port = free_ports(2)
    web = client.status("web")

    def unit(port: int, command: str) -> str:
        return (
            f"\n[processes.p]\ncommand = {command}\nport = {port}\nsocket = true\n"
            'required = false\nready = { log = "^listening", timeout = 30 }\n'
        )

    run.stack.write_text(good + unit(old_port, LISTENER))
    assert cli("reload", "-c", str(run.stack)).returncode == 0
    wait_until(lambda: client.status("p")["ready"], "p ready")
    # The new p never listens and exits 3 after a while: the reload rolls back.
    failing = f'["{PY}", "{SVC}", "--sleep", "2", "--exit", "3"]'
    run.stack.write_text(good + unit(new_port, failing))
    reload = cli_started("reload", "-c", str(run.stack))
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def take() -> bool:
            try:
                holder.bind(("127.0.0.1", old_port))
            except OSError:
                return False
            holder.listen()
            return True

        wait_until(take, "the old port free once the old instance is gone", timeout=20)
        out, err = reload.communicate(timeout=60)
    finally:
        if reload.poll() is None:
            reload.kill()
            reload.wait()
        holder.close()
    assert reload.returncode == 1, (out, err)
    answer = out + err
    assert "rolled back: p failed: exited 3" in answer, answer
    gone = (
        f"cannot listen on 127.0.0.1:{old_port} for unit p: "
        "address already in use (another program holds it)"
    )
    assert gone in answer, answer
    assert "internal error" not in answer
    status = client.status()
    assert all(model["state"] != "changing" for model in status["models"].values()), status
    assert client.status("web")["pid"] == web["pid"]
    assert client.status("p")["state"] == "failed", client.status("p")
    assert client.status("p")["reason"] == gone
    assert gone in (status["config_error"] or ""), status["config_error"]
    # Once the port is free again, starting p binds it again.
    result = cli("start", "p", "-c", str(run.stack))
    assert result.returncode == 0, result
    wait_until(lambda: client.status("p")["ready"], "p ready again")
    assert ask(old_port)[0] == "p"
