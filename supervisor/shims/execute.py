"""`supervise exec`: wait for hand-off files, build the environment with exactly the
injected keys, then become the command.

Two ways to run the command:
- **exec** (the default): `os.execvpe` replaces the shim, so it costs nothing once the
  command runs, keeps the pid (socket activation's LISTEN_PID stays right), and every
  signal the platform sends reaches the command itself — that is the forwarding.
- **attended**, only when something must happen around the command's life: `--publish-to`
  (a oneshot's keys are taken when it exits 0, as under `supervise run`), `--ready-log` or
  `--ready-notify` (readiness the platform cannot see, turned into a marker file and
  systemd's READY=1). The shim then stays the parent: the command runs in its own process
  group, dies with the shim (parent-death signal), gets every forwarded signal on its
  group, has its output drained line by line, and the shim exits with its status
  (128 + N for a signal N).

Publishing: the command's SUPERVISE_ENV is a private file beside the target F. After an
exit 0 its lines are checked with the supervisor's rules, merged over F's previous keys
(later wins, as in the model's key store) and renamed into place, so a reader sees the
whole file or none, never a failed run's keys. F is written even when nothing was
published, because dependents wait for it to exist.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.config.handoff import PublishError, read_published
from supervisor.errors import SuperviseError

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
DRAIN_AFTER_EXIT = 1.0  # output still arriving from grandchildren after the command exited
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
_PR_SET_PDEATHSIG = 1
_READ_SIZE = 65536


class PublishRefused(SuperviseError):
    """What the command published breaks the key rules; nothing was written."""

    def __init__(self, target: Path, line: int, detail: str) -> None:
        self.target, self.line, self.detail = target, line, detail
        where = f"SUPERVISE_ENV line {line}" if line else "SUPERVISE_ENV"
        super().__init__(f"not published to {target}: {where}: {detail}")


@dataclass(frozen=True)
class Attendance:
    """What the shim does around the command's life (all off: plain exec)."""

    publish_to: Path | None = None
    ready_log: re.Pattern[str] | None = None
    ready_notify: bool = False
    ready_file: Path | None = None

    @property
    def needed(self) -> bool:
        return self.publish_to is not None or self.ready_log is not None or self.ready_notify


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Replace this process with `argv`; returns only when that fails (126 or 127)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), dict(env))
    except OSError as exc:
        return _cannot_run(argv[0], exc)


def _cannot_run(command: str, exc: OSError) -> int:
    """Say why `command` did not start; the exit code a shell would give (127, 126)."""
    if isinstance(exc, FileNotFoundError):
        print(f"supervise exec: {command}: command not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"supervise exec: {command}: {exc.strerror or exc}", file=sys.stderr)
    return EXIT_NOT_EXECUTABLE


def run_attended(argv: Sequence[str], env: Mapping[str, str], attend: Attendance) -> int:
    """Run `argv` as a child and stay its parent; see the module docstring.

    Returns:
        The command's exit status (128 + N when killed by signal N), 126/127 when it could
        not be started.

    Raises:
        PublishRefused: it exited 0 but published a line the rules refuse.
    """
    base = attend.publish_to.parent if attend.publish_to is not None else None
    private = Path(tempfile.mkdtemp(prefix=".supervise-exec-", dir=base))
    try:
        return _attend(argv, dict(env), attend, private)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _attend(argv: Sequence[str], env: dict[str, str], attend: Attendance, private: Path) -> int:
    upstream = None
    if attend.ready_log is not None or attend.ready_notify:
        upstream = env.pop("NOTIFY_SOCKET", None)  # readiness is reported by the shim
    published = private / "publish.env"
    if attend.publish_to is not None:
        env["SUPERVISE_ENV"] = str(published)
    notify = None
    if attend.ready_notify:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        notify.bind(str(private / "notify.sock"))
        env["NOTIFY_SOCKET"] = str(private / "notify.sock")
    if attend.ready_file is not None:
        attend.ready_file.unlink(missing_ok=True)  # a marker left by an earlier run is stale
    argv, pass_fds = _keep_listen_fds(argv, env)
    pipe = subprocess.PIPE if attend.ready_log is not None else None
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        try:
            child = subprocess.Popen(
                list(argv),
                env=env,
                stdout=pipe,
                stderr=pipe,
                process_group=0,
                preexec_fn=_die_with_parent(os.getpid()),
                pass_fds=pass_fds,
            )
        except OSError as exc:
            return _cannot_run(argv[0], exc)
        _watch(child, attend, notify, upstream)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if notify is not None:
            notify.close()
        if attend.ready_file is not None:
            attend.ready_file.unlink(missing_ok=True)
    if code == 0 and attend.publish_to is not None:
        publish(published, attend.publish_to)
    return code if code >= 0 else 128 - code


def _die_with_parent(parent: int) -> Callable[[], None]:
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the shim died before prctl took effect
            os._exit(1)

    return in_child


def _keep_listen_fds(
    argv: Sequence[str], env: Mapping[str, str]
) -> tuple[Sequence[str], tuple[int, ...]]:
    """Socket activation through a parent: pass the fds on and make LISTEN_PID the child's."""
    count = env.get("LISTEN_FDS", "")
    if not count.isdigit() or int(count) < 1:
        return argv, ()
    script = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'
    return ("/bin/sh", "-c", script, "sh", *argv), tuple(range(3, 3 + int(count)))


def _watch(
    child: subprocess.Popen[bytes],
    attend: Attendance,
    notify: socket.socket | None,
    upstream: str | None,
) -> None:
    """Drain the child's output and notify datagrams until it exits; report readiness once."""
    ready = False

    def became_ready() -> None:
        nonlocal ready
        if ready:
            return
        ready = True
        if attend.ready_file is not None:
            os.close(os.open(attend.ready_file, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        if upstream:
            _notify_ready(upstream)

    selector = selectors.DefaultSelector()
    pidfd = os.pidfd_open(child.pid)
    selector.register(pidfd, selectors.EVENT_READ, "exit")
    streams: dict[int, tuple[int, bytearray]] = {}
    for source, target in ((child.stdout, 1), (child.stderr, 2)):
        if source is not None:
            os.set_blocking(source.fileno(), False)
            streams[source.fileno()] = (target, bytearray())
            selector.register(source.fileno(), selectors.EVENT_READ, "output")
    if notify is not None:
        selector.register(notify.fileno(), selectors.EVENT_READ, "notify")
    drain_until: float | None = None
    try:
        while True:
            if drain_until is not None:
                left = drain_until - time.monotonic()
                if not streams or left <= 0:
                    return
            else:
                left = None
            for key, _ in selector.select(left):
                if key.data == "exit":
                    selector.unregister(pidfd)
                    drain_until = time.monotonic() + DRAIN_AFTER_EXIT
                elif key.data == "notify" and notify is not None:
                    message = notify.recv(4096).decode(errors="replace")
                    if "READY=1" in message.splitlines():
                        became_ready()
                else:
                    fd = int(key.fd)
                    if _pump(fd, streams, attend.ready_log):
                        became_ready()
                    if fd not in streams:
                        selector.unregister(fd)
    finally:
        selector.close()
        os.close(pidfd)


def _pump(
    fd: int, streams: dict[int, tuple[int, bytearray]], pattern: re.Pattern[str] | None
) -> bool:
    """Copy what `fd` has to its target stream as it comes; keep the unfinished line only
    for matching. True when a line matched `pattern`."""
    target, buffer = streams[fd]
    try:
        data = os.read(fd, _READ_SIZE)
    except BlockingIOError:
        return False
    matched = False
    if not data:  # end of output: a final line without a newline still counts
        del streams[fd]
        return (
            pattern is not None
            and bool(buffer)
            and bool(pattern.search(buffer.decode(errors="replace")))
        )
    _write(target, data)
    buffer.extend(data)
    *lines, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    if pattern is not None:
        matched = any(pattern.search(line.decode(errors="replace")) for line in lines)
    return matched


def _write(fd: int, data: bytes) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            continue
        except OSError:
            return  # nobody reads our output any more; keep draining the child's
        data = data[written:]


def _notify_ready(address: str) -> None:
    """READY=1 to systemd's notify socket (`@` is the abstract namespace)."""
    path = "\0" + address[1:] if address.startswith("@") else address
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        contextlib.suppress(OSError),
    ):
        sock.sendto(b"READY=1", path)


def publish(private: Path, target: Path) -> None:
    """Merge what the command wrote to `private` over `target`'s keys, atomically.

    Raises:
        PublishRefused: a line of `private` breaks the key rules (nothing is written).
    """
    try:
        keys = read_published(str(target), private)
    except PublishError as exc:
        raise PublishRefused(target, exc.line, exc.detail) from exc
    try:
        previous = read_published(str(target), target)
    except PublishError:
        previous = {}  # not ours to keep: the new publish replaces it
    merged = {**previous, **keys}
    text = "".join(f"{key}={value}\n" for key, value in merged.items())
    temporary = target.parent / f".{target.name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
