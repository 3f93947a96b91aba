"""A program as PID 1 of its own PID namespace, as a container runtime starts its entrypoint.

``unshare --pid --fork --mount-proc PROGRAM``: unshare forks once, and its child — PID 1
inside the new namespace, with a ``/proc`` of that namespace — execs the program. Signals
go to that process by its pid out here, as ``docker stop`` sends SIGTERM to the
container's PID 1; unshare exits with its status. When PID 1 ends, the kernel kills
everything else in the namespace, so ``kill`` (SIGKILL to PID 1) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from scripts.incident.children import poll

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
# unshare's fork and exec: milliseconds.
INIT_SECONDS = 10.0
# PID 1's graceful stop; the stacks here stop in well under their shutdown_timeout.
STOP_SECONDS = 40.0


def require_pid_namespaces() -> None:
    """Skip the test, saying why, when this kernel or user may not make PID namespaces."""
    try:
        probe = subprocess.run(
            [*UNSHARE, "true"], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        pytest.skip("unshare (util-linux) is not installed: no PID namespace to run PID 1 in")
    if probe.returncode != 0:
        pytest.skip(
            f"this kernel or user refuses PID namespaces (`{' '.join(UNSHARE)} true` exited "
            f"{probe.returncode}: {probe.stderr.strip()}); run as root on Linux to test PID 1"
        )


@dataclass
class PidOne:
    """The namespace's PID 1, seen from out here."""

    unshare: subprocess.Popen[bytes]
    pid: int  # PID 1's pid in our namespace
    log: Path

    def __repr__(self) -> str:
        state = "running" if self.unshare.poll() is None else f"exited {self.unshare.returncode}"
        return f"<PidOne pid {self.pid} (1 inside), unshare {self.unshare.pid} {state}>"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def namespace_pids(self) -> list[int]:
        """``NSpid`` of PID 1: its pid here, then in each nested namespace (1 inside)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(field) for field in line.split()[1:]]
        raise AssertionError(f"/proc/{self.pid}/status has no NSpid line")

    def signal(self, sig: signal.Signals) -> None:
        if self.unshare.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, seconds: float = STOP_SECONDS) -> int:
        """unshare's exit status, which is PID 1's."""
        return self.unshare.wait(timeout=seconds)


@contextlib.contextmanager
def as_pid_one(argv: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> Iterator[PidOne]:
    """Run ``argv`` as PID 1 of a new PID namespace; SIGKILL it (and so all) on the way out."""
    with log.open("wb") as sink:
        unshare = subprocess.Popen(
            [*UNSHARE, *argv],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def forked() -> tuple[int | None, str]:
        children = psutil.Process(unshare.pid).children()
        if children:
            return children[0].pid, "a child"
        code = unshare.poll()
        return None, "no child yet" if code is None else f"unshare exited {code}"

    pid_one: PidOne | None = None
    try:
        pid_one = PidOne(unshare, poll("unshare's forked child", forked, INIT_SECONDS), log)
        yield pid_one
    finally:
        if unshare.poll() is None:
            # PID 1 alone is signalled: the kernel then ends the rest of the namespace.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid_one.pid if pid_one else unshare.pid, signal.SIGKILL)
            unshare.wait(timeout=STOP_SECONDS)
