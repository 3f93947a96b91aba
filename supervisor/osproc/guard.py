"""The guard's client: start it before any unit, tell it each unit session, stop it last.
See `guard.sh` for what it does when this process dies: it is a POSIX shell script, so
that watching over the stack costs about 1.5 MiB, not a second Python interpreter."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from supervisor.osproc.spawn import spawn_plain

GUARD_SCRIPT = Path(__file__).with_name("guard.sh")
SHELL = "/bin/sh"
GUARD_EXIT_TIMEOUT = 2.0  # the guard's own sweep after a clean stop finds nothing; bounded


def make_runtime_dir(base: str, prefix: str = "supervise-") -> Path:
    """A new directory only this user can enter, as `tempfile.mkdtemp` makes it, without
    importing tempfile and shutil (~0.8 MiB resident for the supervisor's lifetime).

    Raises:
        OSError: `base` is missing or not writable.
    """
    while True:
        path = Path(base, f"{prefix}{os.urandom(6).hex()}")
        try:
            path.mkdir(mode=0o700)  # fails on anything already there, a symlink included
        except FileExistsError:
            continue
        return path.absolute()


def remove_runtime_dir(path: Path) -> None:
    """The directory and everything in it, whatever is left."""
    import shutil  # at the end only

    shutil.rmtree(path, ignore_errors=True)


class Guard:
    """The running guard of one supervisor."""

    def __init__(self, runtime_dir: Path, registry_link: tuple[str, str] | None = None) -> None:
        self.runtime_dir = runtime_dir
        self.registry_link = registry_link
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, environ: Mapping[str, str]) -> None:
        argv = [SHELL, str(GUARD_SCRIPT), str(self.runtime_dir)]
        if self.registry_link is not None:
            link, target = self.registry_link
            argv += [str(link), target]
        # The guard must not look like a unit of an outer supervisor's stack.
        env = {k: v for k, v in environ.items() if not k.startswith("SUPERVISE_ENV")}
        env.setdefault("PATH", os.defpath)
        self._process = spawn_plain(argv, env)

    def watch(self, sid: int) -> None:
        self._write(f"+{sid}\n")

    def forget(self, sid: int) -> None:
        self._write(f"-{sid}\n")

    def socket_bound(self) -> None:
        """The control socket is this supervisor's now: the guard may remove it, and the
        registry entry, if the supervisor dies without doing so."""
        self._write("=\n")

    def _write(self, text: str) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):  # ValueError: closed by `stop`
            os.write(process.stdin.fileno(), text.encode())

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        # A guard that lingers past the timeout still ends on its own.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(GUARD_EXIT_TIMEOUT)
