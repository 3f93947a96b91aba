"""Warm starts: units with `preload = [...]` are forked from a zygote that has already
imported those modules (the program is `zygote_main`), instead of exec'ing a cold
interpreter. The supervisor still owns each unit: it gets the pid at once and the exit
status from the zygote, stops the unit's tree by pid, group and marker as for any unit,
and the zygote dies with the supervisor (parent-death signal), its children with it.

Invariant: a zygote that dies — at import, or later — is noticed at once: every fork
waiting for it fails with its last output lines, and a hint when the cause is a Python
without the project on it (the usual "wrong python on PATH").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from supervisor.errors import SuperviseError
from supervisor.osproc import zygote_main
from supervisor.osproc.pipes import drain
from supervisor.osproc.spawn import Child, Reaper, spawn

ZYGOTE_START_TIMEOUT = 60.0  # importing the preloaded modules once
FORK_TIMEOUT = 10.0  # a fork request answered with the child's pid
LAST_WORDS_TIMEOUT = 1.0  # a dying zygote's exit and final output lines
KEPT_LINES = 20  # the zygote's last output lines, for the reason it died
_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


class WarmStartError(SuperviseError):
    """The zygote could not be started or did not fork the unit."""


def module_command(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """(python, module, args) for `python -m module args...`, else None."""
    if len(argv) >= 3 and argv[1] == "-m":
        return argv[0], argv[2], list(argv[3:])
    return None


def zygote_environment(env_files: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The zygote's own environment: the supervisor's base layers, no unit or model keys,
    and the reserved marker entry each fork overwrites (see `zygote_main`)."""
    from supervisor.plan import OWN_VARIABLES

    base = {**env_files, **environ}
    env = {k: v for k, v in base.items() if k not in OWN_VARIABLES}
    env[zygote_main.MARKER_NAME] = zygote_main.PLACEHOLDER
    return env


class Zygote:
    """One warm interpreter for one (python, preload, cwd)."""

    def __init__(
        self, python: str, preload: Sequence[str], env: Mapping[str, str], cwd: str, reaper: Reaper
    ) -> None:
        self.python, self.preload = python, tuple(preload)
        self.env, self.cwd, self.reaper = dict(env), cwd, reaper
        self.process: Child | None = None
        self.ready = anyio.Event()  # it imported its modules and takes requests
        self.ended = anyio.Event()  # it is gone (or never started): a new one is needed
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self._sock: socket.socket | None = None
        self._forks: dict[int, Child] = {}  # request id → the child it forked
        self._pids: dict[int, anyio.Event] = {}  # request id → set when its pid is known
        self._pid_of: dict[int, int] = {}
        # A child can end before its requester resumes to take it (a fast failure): its
        # exit waits here, or it would be lost and the unit shown running for ever.
        self._early_exits: dict[int, int] = {}
        self._next = 0
        self._lock = anyio.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __repr__(self) -> str:
        state = "ended" if self.ended.is_set() else "ready" if self.ready.is_set() else "starting"
        return f"<Zygote {self.python} {', '.join(self.preload)} {state}>"

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the zygote and serve its answers until it ends."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [
            self.python,
            "-m",
            "supervisor.osproc.zygote_main",
            str(theirs.fileno()),
            *self.preload,
        ]
        try:
            self.process = spawn(
                argv, self.env, self.cwd, reaper=self.reaper, pass_fds=(theirs.fileno(),)
            )
        except BaseException as exc:
            self.lines.append(str(exc))
            self.ended.set()
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        process = self.process
        try:
            async with anyio.create_task_group() as tg:
                drained = [anyio.Event(), anyio.Event()]
                for fd, done in zip((process.stdout, process.stderr), drained, strict=True):
                    tg.start_soon(_drain_then_set, fd, self.lines.append, done)
                task_status.started()
                await self._read_answers(ours)
                # It closed its end: it is exiting. Its last words explain why.
                with anyio.move_on_after(LAST_WORDS_TIMEOUT):
                    await process.exited.wait()
                    for done in drained:
                        await done.wait()
                tg.cancel_scope.cancel()
        finally:
            self.ended.set()
            ours.close()
            for fd in (self.process.stdout, self.process.stderr):
                os.close(fd)
            for child in self._forks.values():  # the zygote is gone, so are they
                if child.returncode is None:
                    child.returncode = -signal.SIGKILL
                    child.exited.set()

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
            child = self._forks.pop(ident, None)
            if child is not None:
                child.returncode = message["exit"]
                child.exited.set()
            elif ident in self._pid_of:  # forked, not yet taken by `fork()`
                self._early_exits[ident] = message["exit"]

    def why_dead(self) -> str:
        """The zygote's last words, and a hint if it is a Python without the project."""
        code = self.process.returncode if self.process is not None else None
        lines = [line for line in self.lines if line.strip()]
        detail = "; ".join(lines[-3:]) or "no output"
        words = f"zygote for {', '.join(self.preload)} ended"
        if code is not None:
            words += f" (exit {code})"
        words += f": {detail}"
        missing = next((m.group(1) for m in map(_MISSING_MODULE.search, lines) if m), None)
        if missing is not None:
            import shutil  # only to explain a zygote that could not import

            found = shutil.which(self.python, path=self.env.get("PATH")) or self.python
            words += (
                f" — {found!r} cannot import {missing!r}: is the `python` on the units' PATH "
                "the one the project is installed in? Activate its virtualenv, or name the "
                "interpreter by its path in `command`"
            )
        return words

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
            WarmStartError: the zygote is not there, died, or did not answer.
        """
        await _unless_ended(self.ready, self.ended, ZYGOTE_START_TIMEOUT)
        if self.ended.is_set() or self._sock is None:
            raise WarmStartError(self.why_dead())
        if not self.ready.is_set():
            raise WarmStartError(
                f"zygote for {', '.join(self.preload)} did not import its modules within "
                f"{ZYGOTE_START_TIMEOUT:g} s"
            )
        assert self._sock is not None
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
            self._pids.pop(ident)
            raise WarmStartError(f"zygote did not take the request: {exc}") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        # Shielded: once the request is out, the zygote forks; the pid must come back
        # here to be owned (and stopped), even if this start is being cancelled.
        with anyio.CancelScope(shield=True):
            await _unless_ended(self._pids[ident], self.ended, FORK_TIMEOUT)
        self._pids.pop(ident)
        pid = self._pid_of.pop(ident, None)
        if pid is None:
            for fd in (out_r, err_r):
                os.close(fd)
            if self.ended.is_set():
                raise WarmStartError(self.why_dead())
            raise WarmStartError("zygote did not fork in time")
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        child = Child(pid, out_r, err_r)
        code = self._early_exits.pop(ident, None)
        if code is None:
            self._forks[ident] = child
        else:
            child.returncode = code
            child.exited.set()
        return child


async def _unless_ended(event: anyio.Event, ended: anyio.Event, timeout: float) -> None:
    """Wait for `event`, but no longer than `timeout` and not past `ended`."""
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def watch_end() -> None:
                await ended.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch_end)
            await event.wait()
            tg.cancel_scope.cancel()


async def _drain_then_set(fd: int, on_line: Callable[[str], None], done: anyio.Event) -> None:
    try:
        await drain(fd, on_line)
    finally:
        done.set()
