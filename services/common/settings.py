"""The pieces every reference server's settings are made of, standard library only.

Each server's ``settings`` module (``services.trade.settings``, ...) builds its frozen
settings from these, and its ``__main__`` loads them through ``load_or_exit`` before it
imports the MCP SDK: a missing or invalid key becomes ONE line on stderr naming the
server and the key (``trade: SIGNATURE environment variable is not set``) and exit 78
(``EX_CONFIG``), which the supervisor reads as "failed on configuration, do not retry".

Invariants: nothing here imports beyond the standard library and ``services.common.ledger``
/ ``services.common.prices`` (both standard-library only); settings are frozen once
loaded, so a server never re-reads its environment behind a running tool; paths are
absolute, resolved against the working directory at startup.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

from services.common.ledger import SIGNATURE_RULE, InvalidSignatureError, check_signature
from services.common.prices import (
    DEFAULT_PRICE_FILE,
    PriceBook,
    PriceFileError,
    is_date,
    load_price_book,
)

EX_CONFIG = 78

# systemd's socket activation hands listening sockets over from this descriptor on.
SD_LISTEN_FDS_START = 3


class ConfigError(Exception):
    """A server's environment or arguments are missing or invalid."""

    def __init__(self, server: str, key: str, problem: str) -> None:
        self.server = server
        self.key = key
        self.problem = problem
        super().__init__(f"{server}: {key} {problem}")


@dataclass(frozen=True)
class Listen:
    """Where to serve: a loopback port to bind, or an inherited listening descriptor."""

    port: int | None = None
    fd: int | None = None

    def __str__(self) -> str:
        return f"inherited fd {self.fd}" if self.fd is not None else f"127.0.0.1:{self.port}"


def require(server: str, key: str, environ: Mapping[str, str]) -> str:
    """The non-empty value of ``key``, or ConfigError "environment variable is not set"."""
    value = environ.get(key, "")
    if not value:
        raise ConfigError(server, key, "environment variable is not set")
    return value


def signature_of(server: str, environ: Mapping[str, str]) -> str:
    """``SIGNATURE``, required and checked."""
    value = require(server, "SIGNATURE", environ)
    try:
        return check_signature(value)
    except InvalidSignatureError:
        raise ConfigError(
            server, "SIGNATURE", f"{value!r} is invalid: use {SIGNATURE_RULE}"
        ) from None


def optional_signature_of(server: str, environ: Mapping[str, str]) -> str | None:
    """``SIGNATURE`` if set (then checked), else None: shown by ``/healthz`` only."""
    return signature_of(server, environ) if environ.get("SIGNATURE") else None


def date_of(server: str, key: str, environ: Mapping[str, str]) -> str:
    value = require(server, key, environ)
    if not is_date(value):
        raise ConfigError(server, key, f"{value!r} is not a date written YYYY-MM-DD")
    return value


def data_dir_of(server: str, environ: Mapping[str, str]) -> Path:
    """``DATA_DIR`` (default ``./data``) made absolute; must be a writable directory."""
    raw = environ.get("DATA_DIR") or "data"
    path = Path(raw).expanduser().absolute()
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise ConfigError(server, "DATA_DIR", f"{str(path)!r} {problem}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(server, "DATA_DIR", f"{str(path)!r} is not writable")
    return path


def price_book_of(server: str, environ: Mapping[str, str]) -> PriceBook:
    """The price book from ``PRICE_FILE`` (default: the bundled sample file)."""
    raw = environ.get("PRICE_FILE")
    path = Path(raw).expanduser().absolute() if raw else DEFAULT_PRICE_FILE
    try:
        return load_price_book(path)
    except PriceFileError as exc:
        key = "PRICE_FILE" if raw else "the bundled price file"
        raise ConfigError(server, key, str(exc)) from None


def _port(server: str, source: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(server, source, f"{value!r} is not a port number (0-65535)")
    return port


def listen_of(server: str, argv: Sequence[str], environ: Mapping[str, str]) -> Listen:
    """Where to serve, from socket activation, ``--port N``, or ``$PORT`` (in that order).

    Socket activation counts only when ``LISTEN_PID`` is this process, as systemd means it.
    """
    port_arg: str | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--port" and args:
            port_arg = args.pop(0)
        elif arg.startswith("--port="):
            port_arg = arg.removeprefix("--port=")
        else:
            raise ConfigError(server, "argument", f"{arg!r} is not understood (usage: --port N)")
    if environ.get("LISTEN_PID") == str(os.getpid()):
        count = environ.get("LISTEN_FDS", "")
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(server, "LISTEN_FDS", f"{count!r} is not a count of sockets >= 1")
        try:
            is_socket = stat.S_ISSOCK(os.fstat(SD_LISTEN_FDS_START).st_mode)
        except OSError:
            is_socket = False
        if not is_socket:
            raise ConfigError(server, "LISTEN_FDS", f"fd {SD_LISTEN_FDS_START} is not a socket")
        return Listen(fd=SD_LISTEN_FDS_START)
    if port_arg is not None:
        return Listen(port=_port(server, "--port", port_arg))
    if environ.get("PORT"):
        return Listen(port=_port(server, "PORT", environ["PORT"]))
    raise ConfigError(server, "PORT", "environment variable is not set (or pass --port N)")


T = TypeVar("T")


def fail(error: ConfigError) -> NoReturn:
    """Report a configuration error the one agreed way: one stderr line, exit 78."""
    sys.stderr.write(f"{error}\n")
    sys.stderr.flush()
    raise SystemExit(EX_CONFIG)


def load_or_exit(load: Callable[[Sequence[str], Mapping[str, str]], T]) -> T:
    """Load settings from ``sys.argv`` and ``os.environ``, or exit 78 with one line."""
    try:
        return load(sys.argv[1:], os.environ)
    except ConfigError as exc:
        fail(exc)
