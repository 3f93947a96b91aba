"""Binding and serving the front ends: the control socket (mode 0600, in a 0700
directory; a stale socket is replaced, a live one means another supervisor), the
per-user registry entry that lets the CLI find this supervisor from the stack file's
path alone, and the read-only health port."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from supervisor.control.health import HealthApi
from supervisor.control.http import Limits, serve
from supervisor.control.plane import ControlPlane
from supervisor.control.routes import ControlApi
from supervisor.errors import ConfigError, Problem
from supervisor.socket_registry import ensure_registry_dir


def peer_pid(stream: Any) -> int | None:
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", raw)[0]
    return pid


def _problem(stack_file: str, path: Path, reason: str) -> ConfigError:
    return ConfigError([Problem(stack_file, "supervise.control_socket", f"{path}: {reason}")])


def _prepare_socket(path: Path, stack_file: str) -> None:
    """Make sure `path` can be bound safely; never change a directory it did not create.

    Raises:
        ConfigError: the directory cannot be made or used, or another supervisor runs.
    """
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)  # ours: private from the start
        info = parent.stat()
    except OSError as exc:
        raise _problem(stack_file, parent, f"cannot create the directory: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise _problem(stack_file, parent, "is not a directory")
    sticky = bool(info.st_mode & stat.S_ISVTX)
    if info.st_mode & 0o022 and not sticky:
        raise _problem(
            stack_file,
            parent,
            f"directory is writable by others (mode {stat.S_IMODE(info.st_mode):o}) without "
            "the sticky bit: anyone could replace the socket; use a private directory",
        )
    if info.st_uid not in (os.getuid(), 0):
        raise _problem(stack_file, parent, "directory belongs to another user")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _problem(stack_file, parent, "directory is not writable")
    if path.exists() or path.is_symlink():
        if _answers(str(path)):
            raise _problem(stack_file, path, "another supervisor is running on it")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale: its supervisor is gone


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _register(entry: str | None, target: str) -> str | None:
    """Point the registry entry at our socket (atomically: a symlink renamed over),
    unless another supervisor of the same stack file, on another socket, still answers
    there: `-c FILE` keeps reaching the first one. Returns that one's socket, if so."""
    if entry is None or not ensure_registry_dir(os.path.dirname(entry)):
        return None
    link = Path(entry)
    with contextlib.suppress(OSError):
        current = os.readlink(link)
        if current != target and _answers(current):
            return current
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)
        os.symlink(target, temporary)
        os.replace(temporary, link)
    return None


def _unregister(link: str | None, target: str) -> None:
    with contextlib.suppress(OSError):
        if link is not None and os.readlink(link) == target:
            os.unlink(link)


async def serve_control(
    plane: ControlPlane,
    registry_link: str | None,
    limits: Limits,
    note: Callable[[str], None],
    bound: Callable[[], None] = lambda: None,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A front end: the control socket, until cancelled. `bound` is called once the
    socket is this supervisor's (never for one another supervisor holds)."""
    view = plane.view()
    path = Path(view.socket)
    _prepare_socket(path, view.stack_file)
    try:
        listener = await anyio.create_unix_listener(path)
        path.chmod(0o600)
    except OSError as exc:
        raise _problem(view.stack_file, path, f"cannot listen: {exc.strerror or exc}") from exc
    other = _register(registry_link, str(path))
    if other is not None:
        note(
            f"{view.stack_file} is run by another supervisor too, on {other}: -c FILE "
            f"reaches that one; reach this one with SUPERVISE_SOCKET={path}"
        )
    bound()
    try:
        task_status.started()
        await serve(listener, ControlApi(plane).handle, peer_pid, limits=limits, note=note)
    finally:
        _unregister(registry_link, str(path))
        path.unlink(missing_ok=True)


async def serve_health(
    plane: ControlPlane,
    address: str,
    limits: Limits,
    note: Callable[[str], None],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A front end: the read-only health port, until cancelled."""
    host, _, port = address.rpartition(":")
    try:
        tcp = await anyio.create_tcp_listener(
            local_host=host, local_port=int(port), reuse_port=False
        )
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    plane.view().stack_file,
                    "supervise.http",
                    f"cannot listen on {address}: {exc.strerror}",
                )
            ]
        ) from exc
    bound = tcp.extra(anyio.abc.SocketAttribute.local_port)
    note(f"health and status on http://{host}:{bound}/readyz")
    task_status.started()
    await serve(tcp, HealthApi(plane).handle, lambda _s: None, limits=limits, note=note)
