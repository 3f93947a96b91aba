"""Warm starts: units with `preload = [...]` are forked from a zygote that has already
imported those modules (see `supervisor.osproc.zygote`), instead of exec'ing a cold
interpreter. The supervisor still owns each unit: it gets the pid at once and the exit
status from the zygote, stops the unit's tree by pid and group as for any unit, and the
zygote dies with the supervisor (parent-death signal), its children with the zygote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from supervisor.errors import SuperviseError
from supervisor.osproc.spawn import Child, Reaper, spawn

ZYGOTE_START_TIMEOUT = 60.0  # importing the preloaded modules once
FORK_TIMEOUT = 10.0  # a fork request answered with the child's pid


class WarmStartError(SuperviseError):
    """The zygote could not be started or did not fork the unit."""


def module_command(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """(python, module, args) for `python -m module args...`, else None."""
    if len(argv) >= 3 and argv[1] == "-m":
        return argv[0], argv[2], list(argv[3:])
    return None


class Zygote:
    """One warm interpreter for one (python, preload) pair."""

    def __init__(
        self, python: str, preload: Sequence[str], env: Mapping[str, str], cwd: str, reaper: Reaper
    ) -> None:
        self.python, self.preload = python, tuple(preload)
        self.env, self.cwd, self.reaper = dict(env), cwd, reaper
        self.process: Child | None = None
        self._sock: socket.socket | None = None
        self._waiting: dict[int, Child] = {}
        self._pids: dict[int, anyio.Event] = {}
        self._pid_of: dict[int, int] = {}
        self._next = 0
        self._lock = anyio.Lock()
        self.ready = anyio.Event()
        self.failed = False
        self.lines: list[str] = []

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def dead(self) -> bool:
        """Failed to start or ended: a new zygote is needed (a starting one is not dead)."""
        return self.failed or (self.process is not None and self.process.returncode is not None)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the zygote and serve its answers until it ends."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [self.python, "-m", "supervisor.osproc.zygote", str(theirs.fileno()), *self.preload]
        try:
            self.process = spawn(
                argv, self.env, self.cwd, reaper=self.reaper, pass_fds=(theirs.fileno(),)
            )
        except BaseException:
            self.failed = True
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        try:
            async with anyio.create_task_group() as tg:
                for fd in (self.process.stdout, self.process.stderr):
                    tg.start_soon(self._collect, fd)
                task_status.started()
                await self._read_answers(ours)
                tg.cancel_scope.cancel()
        finally:
            self.failed = True
            ours.close()
            for fd in (self.process.stdout, self.process.stderr):
                os.close(fd)
            for child in self._waiting.values():  # the zygote is gone, so are they
                if child.returncode is None:
                    child.returncode = -9
                    child.exited.set()

    async def _collect(self, fd: int) -> None:
        from supervisor.runtime.unit import drain

        await drain(fd, lambda line: self.lines.append(line) if len(self.lines) < 100 else None)

    async def _read_answers(self, sock: socket.socket) -> None:
        buffer = bytearray()
        while True:
            await anyio.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                self._answer(json.loads(line))

    def _answer(self, message: dict[str, Any]) -> None:
        if message.get("ready"):
            self.ready.set()
            return
        ident = message["id"]
        if "pid" in message:
            waiter = self._pids.get(ident)
            if waiter is None:  # its requester gave up: nobody owns this child, so end it
                with contextlib.suppress(OSError):
                    os.kill(message["pid"], signal.SIGKILL)
                return
            self._pid_of[ident] = message["pid"]
            waiter.set()
        elif "exit" in message:
            child = self._waiting.pop(ident, None)
            if child is not None:
                child.returncode = message["exit"]
                child.exited.set()

    async def fork(
        self,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        extra_fds: Sequence[int] = (),
    ) -> Child:
        """Fork a unit running `module` as __main__; its output pipes are returned in the
        Child as for a cold spawn.

        Raises:
            WarmStartError: the zygote is not there or did not answer.
        """
        with anyio.move_on_after(ZYGOTE_START_TIMEOUT):
            await self.ready.wait()
        if not self.ready.is_set() or not self.alive or self._sock is None:
            detail = "; ".join(self.lines[-3:]) or "no output"
            raise WarmStartError(f"zygote for {', '.join(self.preload)} is not running ({detail})")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds = [out_w, err_w, *extra_fds]
        self._next += 1
        ident = self._next
        request = {
            "id": ident,
            "module": module,
            "args": list(args),
            "env": dict(env),
            "cwd": cwd,
            "fds": len(fds),
        }
        payload = json.dumps(request).encode() + b"\n"
        self._pids[ident] = anyio.Event()
        try:
            async with self._lock:
                sent = 0
                while sent < len(payload):
                    await anyio.wait_writable(self._sock)
                    try:
                        if sent == 0:
                            sent = self._sock.sendmsg(
                                [payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds))]
                            )
                        else:
                            sent += self._sock.send(payload[sent:])
                    except BlockingIOError:
                        continue
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            raise WarmStartError(f"zygote did not take the request: {exc}") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        # Shielded: once the request is out, the zygote forks; the pid must come back
        # here to be owned (and stopped), even if this start is being cancelled.
        with anyio.CancelScope(shield=True), anyio.move_on_after(FORK_TIMEOUT):
            await self._pids[ident].wait()
        self._pids.pop(ident)
        pid = self._pid_of.pop(ident, None)
        if pid is None:
            for fd in (out_r, err_r):
                os.close(fd)
            raise WarmStartError("zygote did not fork in time")
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        child = Child(pid, out_r, err_r)
        self._waiting[ident] = child
        return child


def zygote_environment(env_files: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The zygote's own environment: the supervisor's base layers, no unit or model keys."""
    from supervisor.plan import OWN_VARIABLES

    base = {**env_files, **environ}
    return {k: v for k, v in base.items() if k not in OWN_VARIABLES}
