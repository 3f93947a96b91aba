"""`supervise exec` with real processes: the inject allowlist, key rules, hand-off waits,
exit codes, exec in place of the shim, signals, publishing and readiness markers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.export.shim_helpers import (
    child,
    finish,
    read_line,
    shim,
    start_shim,
    write_atomically,
)


def show(*keys: str) -> list[str]:
    """A child that prints the named variables of its environment as JSON."""
    return child(
        f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {list(keys)!r}}}))"
    )


def test_a_key_in_the_file_but_not_injected_never_reaches_the_command(tmp_path: Path) -> None:
    keys = tmp_path / "alpha.env"
    keys.write_text("SIGNATURE=alpha-v1\nTODAY_DATE=2025-01-02\nAPI_TOKEN=abcd1234\n")
    result = shim(
        "exec",
        "--env-file",
        str(keys),
        "--inject",
        "SIGNATURE",
        "--",
        *show("SIGNATURE", "TODAY_DATE", "API_TOKEN"),
        env={"TODAY_DATE": "inherited", "API_TOKEN": "inherited"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SIGNATURE": "alpha-v1",
        "TODAY_DATE": None,
        "API_TOKEN": None,
    }


def test_an_injected_key_comes_from_the_environment_when_no_file_has_it(tmp_path: Path) -> None:
    result = shim(
        "exec",
        "--inject",
        "MARKET,SIGNATURE",
        "--",
        *show("MARKET", "SIGNATURE", "OTHER"),
        env={"MARKET": "us", "SIGNATURE": "alpha-v1", "OTHER": "kept"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"MARKET": "us", "SIGNATURE": "alpha-v1", "OTHER": "kept"}


def test_later_key_files_win_over_earlier_ones(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("SIGNATURE=old\nMARKET=us\n")
    second.write_text("SIGNATURE=new\n")
    result = shim(
        "exec",
        "--env-file",
        str(first),
        "--env-file",
        str(second),
        "--inject",
        "SIGNATURE",
        "--inject",
        "MARKET",
        "--",
        *show("SIGNATURE", "MARKET"),
    )
    assert json.loads(result.stdout) == {"SIGNATURE": "new", "MARKET": "us"}


@pytest.mark.parametrize(
    ("content", "line", "detail"),
    [
        ("SIGNATURE=a/b\n", 1, "SIGNATURE 'a/b' is invalid"),
        ("MARKET=us\nSIGNATURE=..\n", 2, "SIGNATURE '..' is invalid"),
        ("# comment\nnot a key line\n", 2, "expected KEY=VALUE"),
        ("1BAD=x\n", 1, "key '1BAD' is invalid"),
    ],
)
def test_a_key_file_line_the_rules_refuse_exits_2_naming_file_and_line(
    tmp_path: Path, content: str, line: int, detail: str
) -> None:
    keys = tmp_path / "keys.env"
    keys.write_text(content)
    result = shim("exec", "--env-file", str(keys), "--inject", "SIGNATURE", "--", "true")
    assert result.returncode == 2
    assert f"{keys}: line {line}: " in result.stderr
    assert detail in result.stderr


def test_an_injected_signature_from_the_environment_is_checked_too() -> None:
    result = shim("exec", "--inject", "SIGNATURE", "--", "true", env={"SIGNATURE": "../x"})
    assert result.returncode == 2
    assert "environment: SIGNATURE '../x' is invalid" in result.stderr


def test_an_injected_key_without_any_value_exits_1_naming_key_and_files(tmp_path: Path) -> None:
    keys = tmp_path / "alpha.env"
    keys.write_text("MARKET=us\n")
    result = shim("exec", "--env-file", str(keys), "--inject", "NO_SUCH_KEY", "--", "true")
    assert result.returncode == 1
    assert f"no value for injected key NO_SUCH_KEY in none of {keys}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--env-file", "/nonexistent/keys.env", "--", "true"],
            "/nonexistent/keys.env: does not exist",
        ),
        (["--inject", "BAD-NAME", "--", "true"], "--inject 'BAD-NAME' is invalid"),
        (["--inject", "A"], "no command after --"),
        (["--ready-file", "/tmp/x", "--", "true"], "--ready-file needs --ready-log"),
        (["--ready-log", "(", "--", "true"], "--ready-log '('"),
    ],
)
def test_bad_usage_exits_2_with_the_reason(args: list[str], message: str) -> None:
    result = shim("exec", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_missing_hand_off_file_times_out_with_exit_1_and_the_reason(tmp_path: Path) -> None:
    handoff = tmp_path / "init.env"
    result = shim("exec", "--wait-file", str(handoff), "--wait-timeout", "0.2", "--", "true")
    assert result.returncode == 1
    assert f"hand-off file {handoff} did not appear within 0.2 s" in result.stderr


def test_the_command_starts_only_once_the_hand_off_file_appears(tmp_path: Path) -> None:
    handoff = tmp_path / "init.env"
    proc = start_shim(
        "exec",
        "--wait-file",
        str(handoff),
        "--wait-timeout",
        "30",
        "--inject",
        "SIGNATURE",
        "--",
        *show("SIGNATURE"),
    )
    assert read_line(proc.stderr, "the shim waiting") == f"supervise exec: waiting for {handoff}"
    write_atomically(handoff, "SIGNATURE=alpha-v1\n")
    code, out, err = finish(proc)
    assert code == 0, err
    assert json.loads(out) == {"SIGNATURE": "alpha-v1"}


def test_exec_replaces_the_shim_so_the_command_keeps_its_pid() -> None:
    proc = start_shim("exec", "--", *child("import os; print(os.getpid())"))
    code, out, _ = finish(proc)
    assert code == 0
    assert int(out) == proc.pid


def test_a_signal_to_the_shims_pid_reaches_the_command_itself() -> None:
    code = (
        "import signal, sys\n"
        "def stop(*_): print('got SIGTERM', flush=True); sys.exit(5)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "signal.pause()\n"
    )
    proc = start_shim("exec", "--", *child(code))
    assert read_line(proc.stdout, "the command's ready line") == "ready"
    proc.send_signal(signal.SIGTERM)
    status, out, _ = finish(proc)
    assert (status, out) == (5, "got SIGTERM\n")


@pytest.mark.parametrize(("make", "status"), [("missing", 127), ("not-executable", 126)])
def test_a_command_that_cannot_run_exits_like_a_shell(
    tmp_path: Path, make: str, status: int
) -> None:
    path = tmp_path / "tool"
    if make == "not-executable":
        path.write_text("#!/bin/sh\n")
        path.chmod(0o644)
    result = shim("exec", "--", str(path))
    assert result.returncode == status
    assert str(path) in result.stderr


PUBLISH = (
    "import os, sys\n"
    "with open(os.environ['SUPERVISE_ENV'], 'a') as f: f.write(sys.argv[1])\n"
    "sys.exit(int(sys.argv[2]))\n"
)


def publish(target: Path, lines: str, status: int = 0) -> object:
    return shim("exec", "--publish-to", str(target), "--", *child(PUBLISH), lines, str(status))


def test_a_oneshot_publishes_into_the_shared_file_when_it_exits_0(tmp_path: Path) -> None:
    target = tmp_path / "init.env"
    result = publish(target, "SIGNATURE=alpha-v1\nTODAY_DATE=2025-01-02\n")
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    assert target.read_text() == "SIGNATURE=alpha-v1\nTODAY_DATE=2025-01-02\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["init.env"]  # no private file left


def test_a_new_publish_merges_over_the_previous_keys(tmp_path: Path) -> None:
    target = tmp_path / "init.env"
    publish(target, "SIGNATURE=alpha-v1\nTODAY_DATE=2025-01-02\n")
    publish(target, "TODAY_DATE=2025-01-03\n")
    assert target.read_text() == "SIGNATURE=alpha-v1\nTODAY_DATE=2025-01-03\n"


def test_a_oneshot_that_publishes_nothing_still_creates_the_file_its_dependents_wait_for(
    tmp_path: Path,
) -> None:
    target = tmp_path / "init.env"
    assert publish(target, "").returncode == 0  # type: ignore[attr-defined]
    assert target.read_text() == ""


def test_a_failed_oneshot_publishes_nothing_and_keeps_its_exit_status(tmp_path: Path) -> None:
    target = tmp_path / "init.env"
    result = publish(target, "SIGNATURE=alpha-v1\n", status=3)
    assert result.returncode == 3  # type: ignore[attr-defined]
    assert not target.exists()


def test_a_refused_publish_exits_2_naming_the_line_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "init.env"
    target.write_text("SIGNATURE=alpha-v1\n")
    result = publish(target, "TODAY_DATE=2025-01-02\nSIGNATURE=../../etc\n")
    assert result.returncode == 2  # type: ignore[attr-defined]
    assert f"not published to {target}: SUPERVISE_ENV line 2: SIGNATURE '../../etc'" in (
        result.stderr  # type: ignore[attr-defined]
    )
    assert target.read_text() == "SIGNATURE=alpha-v1\n"


def test_an_attended_command_gets_the_signals_sent_to_the_shim(tmp_path: Path) -> None:
    code = (
        "import signal, sys\n"
        "def stop(*_): print('got SIGTERM', flush=True); sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "signal.pause()\n"
    )
    proc = start_shim("exec", "--publish-to", str(tmp_path / "x.env"), "--", *child(code))
    assert read_line(proc.stdout, "the command's ready line") == "ready"
    proc.send_signal(signal.SIGTERM)
    status, out, _ = finish(proc)
    assert (status, out) == (7, "got SIGTERM\n")
    assert not (tmp_path / "x.env").exists()


WAIT_FOR_MARKER = (
    "import os, sys, time\n"
    "{announce}\n"
    "deadline = time.monotonic() + 30\n"
    "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline: time.sleep(0.01)\n"
    "print('saw marker' if os.path.exists(sys.argv[1]) else 'no marker', flush=True)\n"
)


@pytest.mark.parametrize(
    ("flags", "announce"),
    [
        (["--ready-log", "^serving on"], "print('serving on 8002', flush=True)"),
        (
            ["--ready-notify"],
            "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "s.sendto(b'STATUS=up\\nREADY=1', os.environ['NOTIFY_SOCKET'])",
        ),
    ],
)
def test_readiness_the_platform_cannot_see_becomes_a_marker_file_while_the_command_runs(
    tmp_path: Path, flags: list[str], announce: str
) -> None:
    marker = tmp_path / "trade.ready"
    marker.write_text("")  # a stale marker from an earlier run must not count
    code = WAIT_FOR_MARKER.format(announce=announce)
    result = shim("exec", *flags, "--ready-file", str(marker), "--", *child(code), str(marker))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "saw marker"
    assert not marker.exists()  # gone with the command


def test_an_attended_commands_output_is_passed_through_whole(tmp_path: Path) -> None:
    code = (
        "import sys; print('out line'); print('err line', file=sys.stderr); print('tail', end='')"
    )
    result = shim("exec", "--ready-log", "never", "--", *child(code))
    assert (result.stdout, result.stderr) == ("out line\ntail", "err line\n")


def test_an_attended_command_killed_by_a_signal_exits_128_plus_the_signal(tmp_path: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = shim("exec", "--publish-to", str(tmp_path / "x.env"), "--", *child(code))
    assert result.returncode == 128 + signal.SIGKILL


def test_the_listen_fds_of_socket_activation_survive_the_exec() -> None:
    code = (
        "import os, socket; s = socket.socket(fileno=3); "
        "print(os.environ['LISTEN_PID'] == str(os.getpid()), s.getsockname()[1])"
    )
    # What systemd does: the socket on fd 3, LISTEN_PID the pid that is exec'd.
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1'; "
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])"
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        argv = [sys.executable, "-m", "supervisor.export.cli", "exec", "--", *child(code)]
        proc = subprocess.Popen(
            [sys.executable, "-c", launcher, str(listener.fileno()), *argv],
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(listener.fileno(),),
        )
        out, _ = proc.communicate(timeout=30)
    assert out.split() == ["True", str(port)]
