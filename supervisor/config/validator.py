"""Validating a stack in another process, so that the supervisor which runs it never
imports the validation library (pydantic): at start in a forked child, which checks the
file on another CPU while the supervisor imports its runtime; at a reload in a new
interpreter, while the supervisor's event loop goes on serving.

Invariants:
- The fork happens before the caller has started any thread (`supervise run`, first
  thing): the child runs Python safely. A running supervisor (threads, an event loop)
  never forks to validate; it starts a new interpreter, handing it the request in a
  private file of its runtime directory (the environment may hold secrets: never argv).
- The child answers once on a pipe — the loaded stack and its report, or the problems —
  then leaves with `os._exit`, running none of the parent's clean-up; a child that dies
  without answering is an error naming how it ended, never a silent empty stack.
- Ctrl-C is the parent's: the child ignores SIGINT, and a parent interrupted while it
  waits kills the child (by its pid) and reaps it.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from supervisor.check import CheckReport
    from supervisor.config.load import LoadedStack, Selection
    from supervisor.osproc.spawn import Reaper

Loaded = tuple["LoadedStack", "CheckReport"]


class Pending:
    """A validation under way in a child process."""

    def __init__(self, pid: int, answer: int) -> None:
        self.pid, self._answer = pid, answer

    def result(self) -> Loaded:
        """The loaded stack and its report.

        Raises:
            ConfigError: the stack's problems.
            RuntimeError: the child crashed or died without answering.
        """
        try:
            chunks = []
            while chunk := os.read(self._answer, 1 << 20):
                chunks.append(chunk)
            _, status = os.waitpid(self.pid, 0)
        except BaseException:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise
        finally:
            os.close(self._answer)
        return _decode(b"".join(chunks), _ending(os.waitstatus_to_exitcode(status)))


def _decode(answer: bytes, ending: str, stderr: str = "") -> Loaded:
    import pickle

    from supervisor.errors import ConfigError

    if not answer:
        said = f"; it said:\n{stderr}" if stderr else ""
        raise RuntimeError(
            f"validating the stack failed: its process ended ({ending}) without an answer{said}"
        )
    try:
        kind, value = pickle.loads(answer)
    except Exception as exc:  # a process killed while it wrote
        raise RuntimeError(
            f"validating the stack failed: its answer is unreadable ({ending})"
        ) from exc
    if kind == "problems":
        raise ConfigError(value)
    if kind == "crash":
        raise RuntimeError(f"validating the stack failed:\n{value}")
    loaded, report = value
    return loaded, report


def start(load: Callable[[], Loaded]) -> Pending:
    """Fork a child that answers with what `load()` returns or the problems it raises.

    Called before anything is imported that the child alone needs: the two processes
    import in parallel."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its answer is what the tests check
        os.close(read_end)
        _answer(write_end, load)
    os.close(write_end)
    return Pending(pid, read_end)


def _answer(fd: int, load: Callable[[], Loaded]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = 0
    try:
        _write_all(fd, _encode(load))
    except BaseException:  # the parent sees no answer and says so
        code = 70
    finally:
        sys.stderr.flush()
        os._exit(code)


def _encode(load: Callable[[], Loaded]) -> bytes:
    import pickle

    from supervisor.errors import ConfigError

    try:
        answer = pickle.dumps(("ok", load()))
    except ConfigError as exc:
        answer = pickle.dumps(("problems", exc.problems))
    except BaseException:  # every ending is reported to the parent
        import traceback

        answer = pickle.dumps(("crash", traceback.format_exc()))
    return answer


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _ending(code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


# The new interpreter's first lines: the supervisor's import path, then the request;
# its answer goes to the file named after the request's.
_BOOT = (
    "import pickle, sys; request = open(sys.argv[1], 'rb'); sys.path[:] = pickle.load(request); "
    "from supervisor.config.validator import answer_request; answer_request(request)"
)
# Each request its own pair of files: a reload from the file watcher and one asked for
# over the API can validate at the same time.
_requests = itertools.count(1)


async def load_elsewhere(
    file: Path,
    environ: Mapping[str, str],
    selection: Selection,
    *,
    workdir: Path,
    reaper: Reaper,
) -> Loaded:
    """`load_checked(file, environ, selection, reloading=True)` in a new interpreter.

    Raises:
        ConfigError: the stack's problems.
        RuntimeError: the interpreter could not start, crashed or died without answering.
    """
    import pickle

    import anyio

    from supervisor.osproc.pipes import drain
    from supervisor.osproc.spawn import SpawnError, spawn

    name = f"validate.{next(_requests)}"
    request, answer = workdir / f"{name}.request", workdir / f"{name}.answer"
    for path in (request, answer):
        path.unlink(missing_ok=True)
    with os.fdopen(_private(request), "wb") as handle:
        pickle.dump(_import_path(), handle)
        pickle.dump((file, dict(environ), selection), handle)
    said: list[str] = []
    try:
        try:
            # In the runtime directory, which this process made: the directory the
            # supervisor was started from may have been removed by a deploy since
            # (the stack file's path is absolute).
            child = spawn(
                [sys.executable, "-c", _BOOT, str(request)], os.environ, str(workdir), reaper=reaper
            )
        except SpawnError as exc:
            raise RuntimeError(f"validating the stack failed: {exc}") from exc
        try:
            async with anyio.create_task_group() as tg:  # never an unread pipe
                tg.start_soon(drain, child.stdout, said.append)
                tg.start_soon(drain, child.stderr, said.append)
            await child.exited.wait()
        finally:
            os.close(child.stdout)
            os.close(child.stderr)
        try:
            data = answer.read_bytes()
        except FileNotFoundError:
            data = b""
    finally:
        for path in (request, answer):
            path.unlink(missing_ok=True)
    return _decode(data, _ending(child.returncode), "\n".join(said[-20:]))


def _import_path() -> list[str]:
    """This process's import path for an interpreter started elsewhere: "" (the
    current directory) made absolute, or left out if that directory is gone."""
    try:
        here = os.getcwd()
    except FileNotFoundError:
        return [entry for entry in sys.path if entry]
    return [entry or here for entry in sys.path]


def _private(path: Path) -> int:
    """A new file only this user can read (the environment may hold secrets)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)


def answer_request(request: BinaryIO) -> None:
    """The new interpreter's side: load and check the stack, answer in a private file
    beside the request."""
    import pickle

    with request:
        file, environ, selection = pickle.load(request)

    def load() -> Loaded:
        from supervisor.check import load_checked

        return load_checked(file, environ, selection, reloading=True)

    answer = _encode(load)
    fd = _private(Path(request.name).with_suffix(".answer"))
    try:
        _write_all(fd, answer)
    finally:
        os.close(fd)
