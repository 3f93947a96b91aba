"""`supervise wait` with real processes against servers this test owns on 127.0.0.1."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.export.shim_helpers import child, finish, read_line, shim, start_shim, write_atomically


class _Status(http.server.BaseHTTPRequestHandler):
    """200 on /healthz, 503 anywhere else."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_listening_tcp_port_is_ready_at_once(tcp_port: int) -> None:
    assert shim("wait", "--tcp", f"127.0.0.1:{tcp_port}", "--timeout", "10").returncode == 0


def test_an_http_url_answering_200_is_ready(http_port: int) -> None:
    url = f"http://127.0.0.1:{http_port}/healthz"
    assert shim("wait", "--http", url, "--timeout", "10").returncode == 0


@pytest.mark.parametrize(
    ("flag", "target", "reason"),
    [
        ("--tcp", "127.0.0.1:{closed}", "Connection refused"),
        ("--http", "http://127.0.0.1:{http}/broken", "HTTP 503"),
        ("--file", "{missing}", "does not exist"),
    ],
)
def test_a_condition_that_never_holds_exits_1_with_the_last_reason(
    tmp_path: Path, http_port: int, flag: str, target: str, reason: str
) -> None:
    target = target.format(closed=closed_port(), http=http_port, missing=tmp_path / "nope")
    result = shim("wait", flag, target, "--timeout", "0.2")
    assert result.returncode == 1
    assert f"{flag.removeprefix('--')} {target} not ready within 0.2 s: " in result.stderr
    assert reason in result.stderr


def test_a_timeout_of_0_makes_exactly_one_attempt(tmp_path: Path) -> None:
    result = shim("wait", "--file", str(tmp_path / "nope"), "--timeout", "0")
    assert result.returncode == 1
    assert "not ready within 0 s" in result.stderr


def test_wait_returns_once_the_file_appears_then_execs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    proc = start_shim(
        "wait",
        "--file",
        str(marker),
        "--timeout",
        "30",
        "--",
        *child("print('started', flush=True)"),
    )
    # The command can only print once the file exists.
    write_atomically(marker, "")
    assert read_line(proc.stdout, "the command after the wait") == "started"
    assert finish(proc)[0] == 0


def test_the_command_after_a_wait_replaces_it() -> None:
    proc = start_shim("wait", "--file", "/", "--", *child("import os; print(os.getpid())"))
    code, out, _ = finish(proc)
    assert (code, int(out)) == (0, proc.pid)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tcp", "nohost"], "--tcp 'nohost': expected HOST:PORT"),
        (["--tcp", "127.0.0.1:70000"], "expected HOST:PORT with a port from 1 to 65535"),
        (["--http", "https://example.invalid/"], "expected an http:// URL"),
        (["--file", "/", "--timeout", "-1"], "--timeout must be a number >= 0"),
        (["--file", "/", "--timeout", "nan"], "(got nan and 0.05)"),
        (["--file", "/", "--interval", "inf"], "(got 60 and inf)"),
    ],
)
def test_a_target_that_can_never_be_probed_exits_2(args: list[str], message: str) -> None:
    result = shim("wait", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_missing_command_after_the_wait_exits_127() -> None:
    result = shim("wait", "--file", "/", "--", "/nonexistent/tool")
    assert result.returncode == 127


def test_wait_imports_nothing_beyond_the_standard_library() -> None:
    code = (
        "import sys; from supervisor.export import cli; "
        "from supervisor.shims import commands, wait; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'anyio', 'h11', 'psutil', 'watchfiles', 'dotenv'}))"
    )
    result = subprocess.run(child(code), capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("mode", "code", "said"), [("json", 0, ""), ("http500", 1, "HTTP 500")])
def test_wait_mcp_passes_only_when_the_endpoint_answers_tools_list(
    tmp_path: Path, mode: str, code: int, said: str
) -> None:
    fake = Path(__file__).resolve().parents[1] / "children" / "fakemcp.py"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(fake)],
        env={**os.environ, "PORT": str(port), "MODE": mode},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor",
                "wait",
                "--mcp",
                f"http://127.0.0.1:{port}/mcp",
                "--timeout",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == code, result.stderr
        assert said in result.stderr
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
