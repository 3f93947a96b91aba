"""Spawning units: own session, parent-death signal, drained pipes; and the one reaper.

Invariants:
- Every child is the leader of a new session, so its pgid and sid equal its pid, known
  before it can exit: nobody ever calls `getpgid()` after the reap.
- The child asks the kernel (PR_SET_PDEATHSIG) for SIGKILL when the thread that forked it
  exits, so spawning happens on the event-loop thread, never in a worker thread. Where
  util-linux's `setpriv --pdeathsig` works, it sets the signal and execs the command, so
  the child needs no Python code and subprocess uses vfork (0.1 ms instead of a 2-3 ms
  fork of the whole supervisor; many times that while a stack starts and the units
  take the CPUs); elsewhere a `preexec_fn` sets it. Through the wrapper the signal is
  armed a moment after the spawn returns (when `setpriv` runs); a supervisor killed in
  that moment is covered by the guard, which kills every process with its marker.
- The supervisor is a child subreaper and the only caller of `waitpid`: a single `Reaper`
  collects every child — its own and orphans it adopted — so it is a correct PID 1.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


class SpawnError(OSError):
    """The command could not be executed at all (not found, not executable, bad cwd)."""

    def __init__(self, argv: Sequence[str], cwd: str, exc: OSError) -> None:
        self.argv, self.cwd = tuple(argv), cwd
        detail = exc.strerror or str(exc)
        target = exc.filename if exc.filename else (argv[0] if argv else "")
        if not os.path.isdir(cwd):
            message = f"working directory {cwd!r} does not exist"
        else:
            message = f"cannot execute {target!r}: {detail}"
        super().__init__(exc.errno or errno.EIO, message)


def become_subreaper() -> None:
    """Adopt orphaned descendants, so they are reaped here and found at stop."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@dataclass(eq=False)
class Child:
    """A spawned process, its output pipes, and its exit once reaped."""

    pid: int
    stdout: int
    stderr: int
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None  # negative: killed by that signal

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<Child pid {self.pid} {state}>"


# `setpriv --pdeathsig KILL --`, () where it does not work, None until tried
_wrapper: tuple[str, ...] | None = None


def _pdeathsig_wrapper() -> tuple[str, ...]:
    """The exec wrapper that sets the parent-death signal, found and tried once: its
    own `--version` run through it must answer (util-linux 2.33 and later)."""
    global _wrapper
    if _wrapper is None:
        _wrapper = ()
        for directory in [*os.get_exec_path(), "/usr/bin", "/bin"]:
            setpriv = os.path.join(directory, "setpriv")
            if os.path.isfile(setpriv) and os.access(setpriv, os.X_OK):
                wrapper = (setpriv, "--pdeathsig", "KILL", "--")
                try:
                    tried = subprocess.run(
                        [*wrapper, setpriv, "--version"],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=5,
                        check=False,
                    )
                except (OSError, subprocess.SubprocessError):
                    break
                # By its output: the reaper may collect its exit before `run` does.
                if b"setpriv" in tried.stdout:
                    _wrapper = wrapper
                break
    return _wrapper


def _check_executable(name: str, env: Mapping[str, str], cwd: str) -> None:
    """Raise what exec would for a command that is not there or not executable, since
    through the wrapper it is the wrapper's exec that fails, after the spawn."""
    if os.sep in name:
        candidates = [os.path.join(cwd, name)]
    else:
        candidates = [os.path.join(cwd, d, name) for d in os.get_exec_path(dict(env))]
    denied = False
    for path in candidates:
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return
            denied = True
    code = errno.EACCES if denied else errno.ENOENT
    raise OSError(code, os.strerror(code), name)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    *,
    reaper: Reaper,
    pass_fds: Sequence[int] = (),
    discard_output: bool = False,
) -> Child:
    """Start `argv` in a new session with pipes for stdout/stderr and /dev/null for stdin
    (`discard_output`: /dev/null for all three, and the Child's pipes are -1).

    Raises:
        SpawnError: the command could not be executed.
    """
    parent = os.getpid()

    def in_child() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    wrapper = _pdeathsig_wrapper()
    if wrapper and argv and os.path.isdir(cwd):
        try:
            _check_executable(argv[0], env, cwd)
        except OSError as exc:
            raise SpawnError(argv, cwd, exc) from exc
    if discard_output:  # a closed pipe instead would kill the child's first write (SIGPIPE)
        out_r, out_w = -1, os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        err_r, err_w = -1, os.dup(out_w)
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
    try:
        popen = subprocess.Popen(
            [*wrapper, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=None if wrapper else in_child,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        for fd in (out_r, err_r):
            if fd >= 0:
                os.close(fd)
        raise SpawnError(argv, cwd, exc) from exc
    finally:
        os.close(out_w)
        os.close(err_w)
    # The Popen object is dropped: the Reaper alone waits, and `returncode` is set so
    # subprocess never tries to collect this pid itself.
    popen.returncode = 0
    for fd in (out_r, err_r):
        if fd >= 0:
            os.set_blocking(fd, False)
    child = Child(popen.pid, out_r, err_r)
    reaper.watch(child)
    return child


# The pids of the children spawned here and not yet reaped: every other child of this
# process is an orphan it adopted (see `tree`).
spawned: set[int] = set()


class Reaper:
    """Collects every exited child of this process on SIGCHLD and wakes its watcher."""

    def __init__(self) -> None:
        self._children: dict[int, Child] = {}
        self._wake = anyio.Event()

    def watch(self, child: Child) -> None:
        self._children[child.pid] = child
        spawned.add(child.pid)
        self._wake.set()  # the exit may have been signalled before the watch

    async def run(self) -> None:
        with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
            self.reap()
            async for _ in signals:
                self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            spawned.discard(pid)
            child = self._children.pop(pid, None)
            if child is not None:
                child.returncode = os.waitstatus_to_exitcode(status)
                child.exited.set()


def spawn_plain(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A helper process of the supervisor's own (the guard): no parent-death signal, its
    own session so a terminal's Ctrl-C does not reach it, stdin a pipe from here."""
    return subprocess.Popen(
        list(argv), stdin=subprocess.PIPE, env=dict(env), start_new_session=True, close_fds=True
    )
