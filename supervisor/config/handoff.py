"""Reading what a unit published through its `SUPERVISE_ENV` file: `KEY=VALUE` lines.

Blank lines and `#` comments are skipped; anything else must be a valid key, and every
value passes the same checks as keys set through the API. Pure apart from the read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from supervisor.config.spec import validate_key
from supervisor.errors import InvalidValue, SuperviseError

MAX_PUBLISH_BYTES = 64 * 1024  # a hand-off of a few keys, not a data channel


class PublishError(SuperviseError):
    """A unit's SUPERVISE_ENV file has a line that cannot be taken."""

    def __init__(self, unit: str, line: int, detail: str) -> None:
        self.unit, self.line, self.detail = unit, line, detail
        where = f"line {line}" if line else "file"
        super().__init__(f"{unit}: SUPERVISE_ENV {where}: {detail}")


def parse_published(unit: str, text: str) -> dict[str, str]:
    """Keys from a SUPERVISE_ENV file's text; later lines win.

    Raises:
        PublishError: a malformed line or an invalid key or value, naming the line.
    """
    keys: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = raw.partition("=")
        if not sep:
            raise PublishError(unit, number, f"expected KEY=VALUE, got {raw!r}")
        key = key.strip()
        try:
            validate_key(key, value)
        except InvalidValue as exc:
            raise PublishError(unit, number, str(exc)) from exc
        keys[key] = value
    return keys


def read_published(unit: str, path: Path) -> dict[str, str]:
    """Keys a unit published. The file is opened without following links and without
    blocking, and must be a regular file: a unit cannot make the supervisor read a FIFO,
    a device or someone else's file.

    Raises:
        PublishError: not a regular file, oversized, not UTF-8, or a bad line.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PublishError(unit, 0, f"cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PublishError(unit, 0, "not a regular file")
        if info.st_size > MAX_PUBLISH_BYTES:
            raise PublishError(unit, 0, f"{info.st_size} bytes, more than {MAX_PUBLISH_BYTES}")
        data = os.read(fd, MAX_PUBLISH_BYTES + 1)
    except OSError as exc:
        raise PublishError(unit, 0, f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_PUBLISH_BYTES:
        raise PublishError(unit, 0, f"more than {MAX_PUBLISH_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise PublishError(unit, 0, "not UTF-8 text") from exc
    return parse_published(unit, text)
