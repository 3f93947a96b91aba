"""`supervise wait`: one readiness condition as a command — a TCP connect, an HTTP GET that
answers 2xx/3xx, an MCP endpoint that answers `initialize` and `tools/list`, a file that
exists, or a command that exits 0 — retried until it holds or a deadline passes.

Invariants: standard library only but for `--mcp`, which uses the supervisor's own MCP
probe (it runs as a Kubernetes exec probe, once per period, so its start must stay
cheap); the deadline is monotonic; attempts start `FIRST_RETRY` apart
and double up to `interval`, as the supervisor's own probes do; a timeout of 0 makes
exactly one attempt; every attempt is itself bounded.
"""

from __future__ import annotations

import http.client
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 60.0  # the whole wait; the same as a probe's default `within`
DEFAULT_INTERVAL = 0.05  # the longest pause between attempts, as for probes
ATTEMPT_TIMEOUT = 1.0  # one connect or request, as a probe's default `timeout`
FIRST_RETRY = 0.01  # the first pause between attempts

Kind = Literal["tcp", "http", "mcp", "file", "exec"]


class WaitTimeout(Exception):
    """The condition did not hold before the deadline."""

    def __init__(self, condition: Condition, timeout: float, last_error: str) -> None:
        self.condition, self.timeout, self.last_error = condition, timeout, last_error
        detail = f": {last_error}" if last_error else ""
        super().__init__(f"{condition} not ready within {timeout:g} s{detail}")


class BadTarget(ValueError):
    """A target that can never be probed (a malformed address or URL)."""

    def __init__(self, kind: Kind, target: str, rule: str) -> None:
        self.kind, self.target, self.rule = kind, target, rule
        super().__init__(f"--{kind} {target!r}: {rule}")


class NotYet(Exception):
    """One attempt answered, but not with success."""


@dataclass(frozen=True)
class Condition:
    kind: Kind
    target: str

    def __str__(self) -> str:
        return f"{self.kind} {self.target}"


def parse_host_port(target: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[V6]:PORT`, or a bare `PORT` meaning 127.0.0.1).

    Raises:
        BadTarget: no port, or a port outside 1..65535.
    """
    host, sep, port = target.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", target
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadTarget("tcp", target, "expected HOST:PORT with a port from 1 to 65535")
    return host, int(port)


def check_target(condition: Condition) -> None:
    """Raises BadTarget for a target no attempt could ever reach."""
    if condition.kind == "tcp":
        parse_host_port(condition.target)
    elif condition.kind in ("http", "mcp"):
        url = urlsplit(condition.target)
        if url.scheme != "http" or not url.hostname:
            raise BadTarget(condition.kind, condition.target, "expected an http:// URL with a host")
        try:
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise BadTarget("http", condition.target, str(exc)) from exc
    elif condition.kind == "exec":
        try:
            words = shlex.split(condition.target)
        except ValueError as exc:
            raise BadTarget("exec", condition.target, str(exc)) from exc
        if not words:
            raise BadTarget("exec", condition.target, "expected a command")
    elif not condition.target:
        raise BadTarget("file", condition.target, "expected a path")


def attempt(condition: Condition, timeout: float) -> None:
    """One try. Raises OSError, TimeoutError or NotYet when the condition does not hold."""
    if condition.kind == "file":
        if not os.path.exists(condition.target):
            raise NotYet(f"{condition.target} does not exist")
        return
    if condition.kind == "exec":
        try:
            status = subprocess.run(
                shlex.split(condition.target), stdin=subprocess.DEVNULL, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise NotYet(f"still running after {timeout:g} s") from exc
        if status != 0:
            raise NotYet(f"exited {status}")
        return
    if condition.kind == "tcp":
        host, port = parse_host_port(condition.target)
        with socket.create_connection((host, port), timeout=timeout):
            return
    if condition.kind == "mcp":
        _mcp(condition.target, timeout)
        return
    url = urlsplit(condition.target)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        status = conn.getresponse().status
    finally:
        conn.close()
    if not 200 <= status < 400:
        raise NotYet(f"HTTP {status}")


def _mcp(url: str, timeout: float) -> None:
    import anyio

    from supervisor.runtime.mcp import McpError, list_tools

    async def one() -> None:
        with anyio.fail_after(timeout):
            await list_tools(url)

    try:
        anyio.run(one)
    except McpError as exc:
        raise NotYet(str(exc)) from exc


def wait_for(
    condition: Condition,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
) -> None:
    """Return once `condition` holds.

    Args:
        condition: what to wait for.
        timeout: seconds for the whole wait; 0 makes exactly one attempt.
        interval: the longest pause between attempts.

    Raises:
        BadTarget: the target is malformed (checked before any attempt).
        WaitTimeout: the condition did not hold in time, with the last attempt's error.
    """
    check_target(condition)
    deadline = time.monotonic() + timeout
    pause = min(FIRST_RETRY, interval)
    last_error = ""
    while True:
        left = deadline - time.monotonic()
        try:
            attempt(condition, min(ATTEMPT_TIMEOUT, max(left, ATTEMPT_TIMEOUT / 10)))
            return
        except (OSError, NotYet, http.client.HTTPException) as exc:
            last_error = str(exc) or type(exc).__name__
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(condition, timeout, last_error)
        time.sleep(min(pause, left))
        pause = min(pause * 2, interval)
