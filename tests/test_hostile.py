"""Hostile input at the edges of a running supervisor: names with a trailing newline
through the API and the CLI, malformed HTTP, running out of file descriptors, unusable
socket directories, hostile stack files for `check`, `run`, `reload` and the client."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.client import Client, ClientError
from tests.helpers import PY, SVC, Run, cli, wait_until, write_stack

STACK = f"""
[supervise]
request_timeout = 1

[models.alpha]
SIGNATURE = "alpha-v1"
[processes.echo]
per_model = true
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
inject = ["SIGNATURE"]
ready = {{ tcp = "${{port}}" }}
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Run, Client]]:
    run = Run(write_stack(tmp_path, STACK))
    try:
        run.event("alpha/echo", "running", ready=True)
        yield run, Client(str(tmp_path / ".supervise" / "control.sock"))
    finally:
        assert run.stop() == 0


def ask(port: int) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.makefile().readline().split()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.set("alpha", {"SIGNATURE": "sig\n"}), "SIGNATURE 'sig\\n' is invalid"),
        (lambda c: c.set("alpha", {"K\n": "v"}), "key 'K\\n' is invalid"),
        (lambda c: c.set("alpha", {"K": "a\0b"}), "contains a NUL byte"),
        (lambda c: c.launch("gamma\n"), "model name 'gamma\\n' is invalid"),
        (lambda c: c.launch("gаmma"), "model name 'gаmma' is invalid"),  # Cyrillic а
        (lambda c: c.set("alpha\n", {"K": "v"}), "unknown model 'alpha\\n'"),
    ],
)
def test_names_with_a_trailing_newline_or_look_alikes_are_refused_by_the_api(
    running: tuple[Run, Client], call: object, message: str
) -> None:
    _, client = running
    pid = client.status("alpha/echo")["pid"]
    with pytest.raises(ClientError) as info:
        call(client)  # type: ignore[operator]
    assert message in info.value.message
    assert info.value.status in (404, 422)
    assert client.status("alpha/echo")["pid"] == pid
    assert [u["unit"] for u in client.status()["units"]] == ["alpha/echo"]


def test_names_with_a_trailing_newline_are_refused_by_the_cli(
    running: tuple[Run, Client],
) -> None:
    run, client = running
    for args, message in [
        (("launch", "gamma\n"), "model name 'gamma\\n' is invalid"),
        (("set", "alpha", "SIGNATURE=sig\n"), "SIGNATURE 'sig\\n' is invalid"),
    ]:
        result = cli(*args, "-c", str(run.stack))
        assert result.returncode == 2, result  # bad input, not a failure
        assert message in result.stderr
    for args in (("drop", "alpha/echo"), ("set", "alpha/echo", "SIGNATURE=x")):
        result = cli(*args, "-c", str(run.stack))  # a unit's name where a model's goes
        assert result.returncode == 1, result  # as for any unknown model
        assert "unknown model 'alpha/echo'; running: alpha" in result.stderr
    assert ask(client.status("alpha/echo")["port"])[2] == "alpha-v1"


MALFORMED = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("header without a colon", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", 400),
    ("no Host header", b"GET /v1/status HTTP/1.1\r\n\r\n", 400),
    (
        "bad Content-Length",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
        400,
    ),
    (
        "bad chunk size",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    (
        "a head over 16 KiB",
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000,
        431,
    ),
    (
        "a body over 1 MiB",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
        + b"x" * 1_100_000,
        413,
    ),
    (
        "non-UTF-8 JSON body",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\xff\xfe",
        400,
    ),
    (
        "JSON nested 100,000 deep",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"[" * 100_000,
        400,
    ),
    (
        "a timeout of 400 digits",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 414\r\n\r\n"
        + b'{"timeout": 1'
        + b"0" * 400
        + b"}",
        422,
    ),
    (
        "a timeout of more than a day",
        b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\n"
        + b'{"timeout": 100000}',
        422,
    ),
]


@pytest.mark.parametrize(("kind", "raw", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_http_gets_an_error_answer_with_a_json_body(
    running: tuple[Run, Client], kind: str, raw: bytes, status: int
) -> None:
    _, client = running
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(client.socket_path)
        with contextlib.suppress(BrokenPipeError):  # the answer may come before the end
            conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == str(status).encode(), (kind, head)
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    assert client.status()["units"][0]["ready"]


def test_a_client_that_sends_nothing_is_answered_408_after_the_read_deadline(
    running: tuple[Run, Client],
) -> None:
    _, client = running
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(client.socket_path)
        conn.sendall(b"GET /v1/status HTTP/1.1\r\n")  # and then nothing more
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408")


def test_running_out_of_descriptors_pauses_accepting_and_units_keep_serving(
    tmp_path: Path,
) -> None:
    stack = write_stack(tmp_path, STACK)
    limit = 48  # fewer descriptors than the idle connections below

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    run = Run(stack, preexec=low_fd_limit)
    sockets: list[socket.socket] = []
    try:
        run.event("alpha/echo", "running", ready=True)
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        port = client.status("alpha/echo")["port"]
        for _ in range(80):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(client.socket_path)  # queued in the backlog when not accepted
            sockets.append(conn)
        run.wait_for(
            lambda r: "cannot accept connections (Too many open files)" in r.get("line", ""),
            "the supervisor to say it ran out of descriptors",
        )
        assert ask(port)[2] == "alpha-v1"  # the unit serves on
        # The idle connections time out (408) one by one, descriptors come back, and
        # status answers, without any client closing anything.
        wait_until(lambda: _status_answers(client), "status answering", timeout=60)
        assert run.proc.poll() is None
        assert ask(port)[2] == "alpha-v1"
    finally:
        for conn in sockets:
            conn.close()
        assert run.stop() == 0
    lines = [r.get("line", "") for r in run.records if r.get("unit") == "supervise"]
    said = sum("cannot accept connections" in line for line in lines)
    again = sum("accepting connections again" in line for line in lines)
    assert 1 <= said <= again + 1  # once per episode, not once per retry


def test_connections_beyond_the_cap_are_answered_503_at_once(tmp_path: Path) -> None:
    text = STACK.replace("request_timeout = 1", "request_timeout = 1\nmax_connections = 4")
    run = Run(write_stack(tmp_path, text))
    sockets: list[socket.socket] = []
    try:
        run.event("alpha/echo", "running", ready=True)
        path = str(tmp_path / ".supervise" / "control.sock")
        for _ in range(4):  # idle: they hold the four slots
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(path)
            sockets.append(conn)
        wait_until(lambda: not _status_answers(Client(path)), "the cap to be full")
        with pytest.raises(ClientError) as info:
            Client(path).status()
        assert info.value.status == 503
        assert "4 connections are open" in info.value.message
    finally:
        for conn in sockets:
            conn.close()
        assert run.stop() == 0


def _status_answers(client: Client) -> bool:
    try:
        return bool(client.status()["units"])
    except ClientError:
        return False


def test_an_unusable_socket_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for place, reason in [
        (blocker / "ctl.sock", "is not a directory"),
        (blocker / "sub" / "ctl.sock", "cannot create the directory"),
    ]:
        text = STACK.replace("[supervise]", f'[supervise]\ncontrol_socket = "{place}"')
        result = cli("run", "-c", str(write_stack(tmp_path, text)), timeout=30)
        assert result.returncode == 2, result
        assert str(place.parent) in result.stderr and reason in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("mode", "accepted"), [(0o755, True), (0o1777, True), (0o777, False), (0o775, False)]
)
def test_a_shared_socket_directory_is_never_changed_and_refused_if_anyone_may_write(
    tmp_path: Path, mode: int, accepted: bool
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    text = STACK.replace("[supervise]", f'[supervise]\ncontrol_socket = "{shared}/ctl.sock"')
    stack = write_stack(tmp_path, text)
    if accepted:
        run = Run(stack)
        try:
            run.event("alpha/echo", "running", ready=True)
            assert stat.S_IMODE((shared / "ctl.sock").stat().st_mode) == 0o600
        finally:
            assert run.stop() == 0
    else:
        result = cli("run", "-c", str(stack), timeout=30)
        assert result.returncode == 2
        assert "writable by others" in result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == mode & 0o7777


HOSTILE = [
    "[processes.a]\ncommand = 'echo \"x'\n",
    "[processes.a]\ncommand = 'x'\ncwd = '${'\n",
    "a = " + "[" * 500 + "]" * 500 + "\n",
    "[processes.a]\ncommand = 'x'\nready = { log = '" + "(" * 900 + ")" * 900 + "' }\n",
    "[processes.a]\ncommand = 'x'\nready = { exec = 'test \"' }\n",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_check_and_run_of_a_hostile_file_exit_2_without_a_traceback(
    tmp_path: Path, text: str
) -> None:
    stack = write_stack(tmp_path, text)
    for verb in ("check", "run"):
        result = cli(verb, "-c", str(stack), timeout=30)
        assert result.returncode == 2, (verb, result)
        assert "Traceback" not in result.stderr
        assert str(stack) in result.stderr


def test_reload_of_a_hostile_file_exits_2_and_the_stack_runs_on(
    running: tuple[Run, Client],
) -> None:
    run, client = running
    pid = client.status("alpha/echo")["pid"]
    good = run.stack.read_text()
    for text in HOSTILE:
        run.stack.write_text(good + "\n" + text)
        result = cli("reload", "-c", str(run.stack))
        assert result.returncode == 2, (text[:40], result)
        assert "internal error" not in result.stderr + result.stdout
    assert client.status("alpha/echo")["pid"] == pid


@pytest.mark.parametrize(
    "text",
    [
        "[supervise]\ncontrol_socket = 3\n",
        "[supervise\ncontrol_socket = '/x'\n",
        "supervise = " + "[" * 600 + "]" * 600 + "\n",
        "\xff\xfe",
    ],
)
def test_client_commands_read_a_hostile_stack_file_and_say_which_socket_they_tried(
    tmp_path: Path, text: str
) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_bytes(
        text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe"
    )
    result = cli("status", "-c", str(stack))
    assert result.returncode == 3, result
    assert "no supervisor answers on" in result.stderr
    assert "Traceback" not in result.stderr
    assert str(stack) in result.stderr or str(tmp_path) in result.stderr
    assert os.path.exists(stack)
