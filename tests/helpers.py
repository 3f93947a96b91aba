"""Running `supervise` as a real subprocess and watching what it prints.

`Run` starts `python -m supervisor run --log-format json` and collects every record it
prints; tests wait for records with a deadline that fails with "want X, got Y after T",
never with a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from supervisor.osproc import procfs

ROOT = Path(__file__).resolve().parent.parent
SVC = str(ROOT / "tests" / "children" / "svc.py")
PY = sys.executable
WAIT = 30.0  # default deadline for anything a test waits for

Record = dict[str, Any]


def write_stack(directory: Path, text: str, name: str = "supervise.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a `supervise` command to completion."""
    return subprocess.run(
        [PY, "-m", "supervisor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


# Commands `cli_started` started in the running test; its teardown closes their pipes,
# so a test that fails before `communicate` leaves no unclosed file to a later test.
STARTED_COMMANDS: list[subprocess.Popen[str]] = []


def cli_started(*args: str) -> subprocess.Popen[str]:
    """Start a `supervise` command and return at once (its output piped, as text); the
    caller ends it with `communicate` or kills it."""
    command = subprocess.Popen(
        [PY, "-m", "supervisor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    STARTED_COMMANDS.append(command)
    return command


def close_started_commands() -> None:
    """Kill (by pid) what is still running of the commands started, and close their pipes."""
    while STARTED_COMMANDS:
        command = STARTED_COMMANDS.pop()
        if command.poll() is None:
            command.kill()
        try:
            command.communicate(timeout=10)  # reads what is left and closes both pipes
        except subprocess.TimeoutExpired:  # a descendant holds a pipe open: close ours
            for pipe in (command.stdout, command.stderr):
                if pipe is not None:
                    pipe.close()
            command.wait()


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"want {what}, still not true after {timeout:g} s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    return procfs.alive(pid)


class Run:
    """A `supervise run` in the background. Every Run a test starts is kept in
    `Run.started` (emptied before each test), so that a failing test's report shows
    what its supervisors said (see `tests/conftest.py`)."""

    started: ClassVar[list[Run]] = []

    def __init__(
        self,
        stack: Path,
        *args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        preexec: Callable[[], None] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.stack = stack
        self.proc = subprocess.Popen(
            [
                *(command or [PY, "-m", "supervisor"]),
                "run",
                "-c",
                str(stack),
                "--log-format",
                "json",
                *args,
            ],
            cwd=cwd or stack.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=preexec,
        )
        self.records: list[Record] = []
        self.stderr: list[str] = []
        Run.started.append(self)
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                record = {"unit": "?", "line": raw.rstrip("\n"), "stream": "raw"}
            with self._cond:
                self.records.append(record)
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.stderr.append(raw.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Record], bool], what: str, timeout: float = WAIT
    ) -> Record:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for record in self.records[seen:]:
                    if predicate(record):
                        return record
                seen = len(self.records)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    tail = "\n  ".join(json.dumps(r) for r in self.records[-15:])
                    raise AssertionError(
                        f"want {what}; got after {timeout - max(left, 0):.1f} s (exit "
                        f"{self.proc.poll()}), last records:\n  {tail}\nstderr: "
                        + "\n".join(self.stderr[-10:])
                    )
                self._cond.wait(min(left, 0.2))

    def explain(self) -> str:
        """What went wrong, for an assertion message: failures, notes and stderr."""
        with self._cond:
            odd = [
                json.dumps(r)
                for r in self.records
                if r.get("event") in ("failed", "backoff") or r.get("unit") == "supervise"
            ]
        return "\n".join([*odd[-20:], "stderr:", *self.stderr[-20:]])

    def transcript(self, last: int = 60) -> str:
        """The last records and stderr lines, for a failed test's report."""
        with self._cond:
            lines = [json.dumps(r) for r in self.records[-last:]]
            return "\n".join([*lines, "stderr:", *self.stderr[-last:]])

    def _reading(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def event(
        self,
        unit: str,
        state: str,
        *,
        ready: bool | None = None,
        timeout: float = WAIT,
        after: int = 0,
    ) -> Record:
        def match(r: Record) -> bool:
            return (
                r.get("unit") == unit
                and r.get("event") == state
                and (ready is None or r.get("ready") == ready)
                and self.records.index(r) >= after
            )

        return self.wait_for(match, f"{unit} {state}" + (" ready" if ready else ""), timeout)

    def line(self, unit: str, text: str, timeout: float = WAIT) -> Record:
        return self.wait_for(
            lambda r: r.get("unit") == unit and text in r.get("line", ""),
            f"{unit} printing {text!r}",
            timeout,
        )

    def events(self, unit: str | None = None) -> list[Record]:
        with self._cond:
            return [r for r in self.records if "event" in r and unit in (None, r["unit"])]

    def lines(self, unit: str) -> list[str]:
        with self._cond:
            return [r["line"] for r in self.records if r.get("unit") == unit and "line" in r]

    def pid(self, unit: str) -> int:
        record = self.event(unit, "running")
        return int(record["pid"])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def stop(self, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
