"""The CLI as a user drives it: every exit code of the README's table, options before or
after the verb, the stack file found from a subdirectory, `--version`, `logs` with the
supervisor's own events and its filters, `status UNIT` with cpu and rss, `status
--watch`, and no traceback on a closed pipe or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import __version__
from tests.helpers import PY, SVC, Run, cli, cli_started, wait_until, write_stack

STACK = f"""
[models.alpha]
SIGNATURE = "alpha-v1"

[processes.echo]
per_model = true
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
inject = ["SIGNATURE"]
ready = {{ tcp = "${{port}}" }}

[processes.picky]
per_model = true
command = ["sh", "-c", "[ \\"$SIGNATURE\\" = bad ] && {{ echo no >&2; exit 78; }}; exec sleep 60"]
inject = ["SIGNATURE"]
start_seconds = 0.2
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Run]:
    run = Run(write_stack(tmp_path, STACK))
    try:
        run.event("alpha/echo", "running", ready=True)
        run.event("alpha/picky", "running", ready=True)
        yield run
    finally:
        assert run.stop() == 0


# (arguments, exit code, a piece of the output) — one row per README exit code.
EXIT_CODES = [
    (("status",), 0, "alpha/echo"),
    (("status", "nope"), 1, "unknown unit 'nope'"),
    (("set", "alpha", "NEW=1"), 0, "changed: NEW"),
    (("set", "alpha", "SIGNATURE=bad"), 1, "rolled back: alpha/picky failed"),
    (("set", "gamma", "A=1"), 1, "unknown model 'gamma'"),
    (("set", "alpha", "not-a-pair"), 2, "expected KEY=VALUE"),
    (("set", "alpha", "1BAD=x"), 2, "key '1BAD' is invalid"),
    (("set", "alpha"), 2, "set needs KEY=VALUE or --unset KEY"),
    (("set", "alpha", "A=1", "--unset", "A"), 2, "A is both set and unset"),
    (("set", "alpha", "--unset", "NOPE"), 0, "nothing changed: model alpha has no key NOPE"),
    (("set", "alpha", "--unset", "SIGNATURE"), 0, "SIGNATURE is the stack file's ([models.alpha]"),
    (("launch", "alpha"), 1, "already running"),
    (("launch", "../x"), 2, "model name '../x' is invalid"),
    (("drop", "nope"), 1, "unknown model 'nope'"),
    (("restart", "alpha/echo"), 0, "alpha/echo restarted"),
    (("restart", "nope/x"), 1, "unknown unit 'nope/x'"),
    (("start", "alpha/echo"), 0, "nothing to do"),
    (("stop", "nope"), 1, "unknown unit or model 'nope'"),
    (("reload",), 0, "nothing changed"),
    (("logs", "nope"), 1, "unknown unit 'nope'"),
    (("logs", "--since", "yesterday"), 2, "--since: expected"),
    (("logs", "--grep", "("), 2, "grep: invalid regular expression"),
    (("logs", "--grep", "(x+x+)+y"), 2, "grep: regular expression '(x+x+)+y' repeats"),
    (("restart", "alpha/echo", "--timeout", "nan"), 2, "positive number of seconds, got 'nan'"),
    (("set", "alpha", "A=1", "--timeout", "inf"), 2, "positive number of seconds, got 'inf'"),
    (("set", "alpha", "A=1", "--timeout", "1e10"), 2, "at most 86400 seconds (a day)"),
    (("restart", "alpha/echo", "--timeout", "86401"), 2, "at most 86400 seconds"),
    (("status", "--watch", "1e10"), 2, "at most 86400 seconds"),
]


@pytest.mark.parametrize(
    ("args", "code", "text"), EXIT_CODES, ids=[" ".join(a) for a, _, _ in EXIT_CODES]
)
def test_every_exit_code_of_the_readme_table(
    running: Run, args: tuple[str, ...], code: int, text: str
) -> None:
    result = cli(*args, "-c", str(running.stack))
    assert result.returncode == code, (result.stdout, result.stderr)
    assert text in result.stdout + result.stderr


def test_run_and_check_exit_codes(tmp_path: Path) -> None:
    assert cli("check", "-c", str(write_stack(tmp_path, STACK))).returncode == 0
    bad = write_stack(tmp_path, "[processes.a]\ncommand = 5\n", "bad.toml")
    assert cli("check", "-c", str(bad)).returncode == 2
    assert cli("run", "-c", str(bad)).returncode == 2
    failing = write_stack(
        tmp_path, "[processes.a]\ncommand = 'false'\nrestart = 'never'\n", "f.toml"
    )
    assert cli("run", "-c", str(failing)).returncode == 1
    nobody = cli("status", env={"SUPERVISE_SOCKET": str(tmp_path / "none.sock")})
    assert nobody.returncode == 3


def test_version_and_options_before_or_after_the_verb(running: Run) -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"supervise {__version__}"
    before = cli("-c", str(running.stack), "status")
    after = cli("status", "-c", str(running.stack))
    assert before.returncode == after.returncode == 0
    assert before.stdout.splitlines()[0] == after.stdout.splitlines()[0]


def test_the_stack_is_found_from_a_subdirectory_and_not_past_the_repository(
    running: Run,
) -> None:
    deep = running.stack.parent / "src" / "pkg"
    deep.mkdir(parents=True)
    found = cli("status", cwd=deep, env={"SUPERVISE_SOCKET": ""})
    assert found.returncode == 0, found.stderr
    assert "alpha/echo" in found.stdout
    (running.stack.parent / "src" / ".git").mkdir()  # a repository below the stack
    stopped = cli("check", cwd=deep, env={"SUPERVISE_SOCKET": ""})
    assert stopped.returncode == 2
    assert "here or in a parent directory (up to the repository root)" in stopped.stderr


@pytest.mark.parametrize("verb", ["status", "check", "run"])
def test_a_command_run_from_a_removed_directory_says_so(tmp_path: Path, verb: str) -> None:
    """A shell left in a directory a deploy removed: a traceback before."""
    gone = tmp_path / "release-1"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && exec "$2" -m supervisor "$3"'
    result = subprocess.run(
        ["sh", "-c", script, "sh", str(gone), PY, verb],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SUPERVISE_SOCKET": ""},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        "supervise: the current directory no longer exists (it was removed after this"
        " shell entered it); cd to one that does\n"
    )


def test_logs_show_the_supervisors_own_events_and_filter(running: Run) -> None:
    stack = str(running.stack)
    assert cli("restart", "alpha/echo", "-c", stack).returncode == 0
    lines = cli("logs", "alpha/echo", "-n", "50", "-c", stack).stdout.splitlines()
    assert any("supervise | alpha/echo stopping" in line for line in lines), lines
    assert any("alpha/echo | up " in line for line in lines)
    plain = cli("logs", "alpha/echo", "--no-events", "-c", stack).stdout.splitlines()
    assert plain and not any("supervise |" in line for line in plain)
    grepped = cli("logs", "--grep", "^listening$", "-c", stack).stdout.splitlines()
    assert grepped and all(line.endswith("| listening") for line in grepped)
    later = cli("logs", "--since", "0s", "-c", stack).stdout
    assert later == ""  # nothing newer than now


def test_status_of_one_unit_shows_cpu_and_rss(running: Run) -> None:
    table = cli("status", "alpha/echo", "-c", str(running.stack)).stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert header[:9] == [
        "UNIT",
        "STATE",
        "READY",
        "PID",
        "PORT",
        "RESTARTS",
        "UPTIME",
        "CPU",
        "RSS",
    ]
    assert re.fullmatch(r"[0-9.]+s", row[7]) and re.fullmatch(r"[0-9.]+M", row[8]), row


def test_status_watch_refreshes_and_ctrl_c_ends_it_quietly(running: Run) -> None:
    proc = cli_started("status", "--watch", "0.2", "-c", str(running.stack))
    try:
        assert proc.stdout is not None
        headers = 0
        deadline = time.monotonic() + 30
        while headers < 2 and time.monotonic() < deadline:
            headers += proc.stdout.readline().startswith("UNIT")
        assert headers == 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_closed_pipe_ends_a_client_command_quietly(running: Run) -> None:
    for _ in range(30):
        cli("restart", "alpha/echo", "-c", str(running.stack))  # plenty of log lines
    result = subprocess.run(
        f"{PY} -m supervisor logs -n 2000 -c {running.stack} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
        start_new_session=True,
    )
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_ctrl_c_of_logs_follow_is_not_a_traceback(running: Run) -> None:
    proc = cli_started("logs", "-f", "-c", str(running.stack))
    try:
        assert proc.stdout is not None
        wait_until(lambda: bool(proc.stdout.readline()), "a first line")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_co_installed_supervisord_is_reported_at_start_up(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "supervisor-4.2.5.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: supervisor\nVersion: 4.2.5\n")
    stack = write_stack(tmp_path, "[processes.a]\ncommand = 'true'\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = cli("check", "-c", str(stack), env=env)
    assert result.returncode == 0
    assert "supervisord (supervisor 4.2.5) is installed in this environment" in result.stderr
    clean = cli("check", "-c", str(stack))
    assert "supervisord" not in clean.stderr


def test_a_mistyped_stack_file_is_named_and_a_removed_one_still_finds_its_supervisor(
    running: Run, tmp_path: Path
) -> None:
    typo = tmp_path / "supervise.tmol"
    result = cli("status", "-c", str(typo))
    assert result.returncode == 2, result
    assert f"supervise: {typo}: no such file, and no supervisor runs it" in result.stderr
    # A stack file removed while its stack runs: the supervisor registered it.
    moved = running.stack.with_name("moved.toml")
    running.stack.rename(moved)
    try:
        shown = cli("status", "-c", str(running.stack))
        assert shown.returncode == 0, shown
        assert "alpha/echo" in shown.stdout
    finally:
        moved.rename(running.stack)
