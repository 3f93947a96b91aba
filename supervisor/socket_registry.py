"""Where a supervisor's control socket is: the per-user registry of running supervisors
(a symlink per stack file to its socket), else the stack file's `control_socket`, else
the default next to the file.

Standard library only and cheap to import: every client command that names or finds a
stack file comes through here (`re` and `supervisor.digest` are imported only when
needed). A registry directory anyone but its owner could write to is never trusted.
"""

from __future__ import annotations

import os
import stat

DEFAULT_SOCKET = ".supervise/control.sock"


def registry_dir() -> str:
    """Where running supervisors register their socket by stack file (per user)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "supervise")
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"supervise-{os.getuid()}")


def registry_entry(stack_file: str | os.PathLike[str]) -> str | None:
    """The registry entry of a stack file: a symlink to its supervisor's socket."""
    from supervisor.digest import sha256_hex

    resolved = os.path.realpath(stack_file)
    digest = sha256_hex(resolved.encode(errors="surrogateescape"))[:32]
    return os.path.join(registry_dir(), f"{digest}.sock")


def ensure_registry_dir(directory: str | os.PathLike[str]) -> bool:
    """Create the registry directory (0700) or check it is ours and private; a directory
    someone else could write to is never trusted."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


_CONTROL_SOCKET = r"""^\s*control_socket\s*=\s*(?:"([^"\n]*)"|'([^'\n]*)')"""


def socket_from_stack_file(
    path: str | os.PathLike[str], must_exist: bool = False
) -> tuple[str, str]:
    """The control socket of the supervisor running `path`, and how it was found: the
    registry entry a running supervisor made for this file, else the file's
    `control_socket` (read leniently: a file that does not parse is searched for the
    line), else the default next to the file.

    Raises:
        FileNotFoundError: `must_exist`, no supervisor registered the file, and there is
            no such file (a mistyped `-c`; a file removed while it runs is still found).
    """
    path = os.fspath(path)
    entry = registry_entry(path)
    if entry is not None and ensure_registry_dir(os.path.dirname(entry)):
        try:
            return os.readlink(entry), f"the supervisor running {path}"
        except OSError:
            pass
    value, how = DEFAULT_SOCKET, f"the default socket of {path}"
    text = ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if must_exist:
            raise
    except (OSError, UnicodeDecodeError):
        pass
    if path.endswith(".toml") and text:
        import re

        found = re.search(_CONTROL_SOCKET, text, re.M)
        if found is not None:
            value = found.group(1) if found.group(1) is not None else found.group(2)
            how = f"control_socket in {path}"
    socket_path = os.path.expanduser(os.path.expandvars(value))
    if not os.path.isabs(socket_path):
        socket_path = os.path.join(os.path.dirname(os.path.abspath(path)), socket_path)
    return socket_path, how
