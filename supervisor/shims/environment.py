"""What `supervise exec` gives its command: the inherited environment, with exactly the
injected keys taken from the key files (later files win) or, failing that, from the
inherited environment (a Kubernetes `secretKeyRef` puts a key there).

Invariants, the same allowlist rule as under `supervise run`: a key that a file defines but
`--inject` does not name never reaches the command, not even through the inherited
environment; every injected value passes the supervisor's key rules (a SIGNATURE with `/`
or `..` is refused); files are read in the SUPERVISE_ENV dialect (`KEY=VALUE` lines, no
quoting) with the supervisor's safe reader. Pure apart from reading the files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.config.handoff import PublishError, read_published
from supervisor.config.spec import ENV_KEY_RULE, is_env_key, validate_key
from supervisor.errors import InvalidValue, SuperviseError

FIRST_RETRY = 0.01  # the first pause while waiting for a hand-off file
MAX_PAUSE = 0.1  # the longest pause while waiting for a hand-off file


class KeyFileError(SuperviseError):
    """A key file is missing, unreadable, or has a line the rules refuse."""

    def __init__(self, file: Path, line: int, detail: str) -> None:
        self.file, self.line, self.detail = file, line, detail
        where = f"{file}: line {line}" if line else str(file)
        super().__init__(f"{where}: {detail}")


class BadInjectName(SuperviseError):
    """`--inject` names something that cannot be an environment variable."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"--inject {name!r} is invalid: {ENV_KEY_RULE}")


class InvalidInjectedValue(SuperviseError):
    """An injected key's value breaks the key rules; names where the value came from."""

    def __init__(self, source: str, exc: InvalidValue) -> None:
        self.source, self.reason = source, str(exc)
        super().__init__(f"{source}: {exc}")


class MissingKey(SuperviseError):
    """An injected key has a value in no key file and not in the environment."""

    def __init__(self, key: str, files: Sequence[Path]) -> None:
        self.key, self.files = key, tuple(files)
        where = ", ".join(str(f) for f in files)
        origin = f"in none of {where} nor in the environment" if files else "in the environment"
        super().__init__(f"no value for injected key {key} {origin}")


class HandOffTimeout(SuperviseError):
    """A hand-off file did not appear before the deadline."""

    def __init__(self, file: Path, timeout: float) -> None:
        self.file, self.timeout = file, timeout
        super().__init__(
            f"hand-off file {file} did not appear within {timeout:g} s "
            "(has the unit that publishes it completed?)"
        )


def parse_inject(values: Iterable[str]) -> tuple[str, ...]:
    """`--inject A,B --inject C` → ("A", "B", "C"), in order, without repeats.

    Raises:
        BadInjectName: a name that is not an environment variable name.
    """
    names: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if not is_env_key(name):
                raise BadInjectName(name)
            if name not in names:
                names.append(name)
    return tuple(names)


def read_key_file(file: Path) -> dict[str, str]:
    """The keys of one file.

    Raises:
        KeyFileError: the file does not exist, cannot be read, or a line is refused.
    """
    if not file.exists():
        raise KeyFileError(file, 0, "does not exist")
    try:
        return read_published(str(file), file)
    except PublishError as exc:
        raise KeyFileError(file, exc.line, exc.detail) from exc


def wait_for_files(
    files: Sequence[Path], timeout: float, on_wait: Callable[[Path], None] | None = None
) -> None:
    """Return once every file exists (a publisher renames it into place complete).

    Args:
        files: the hand-off files.
        timeout: seconds for all of them together (monotonic).
        on_wait: called once with the first missing file before the first pause.

    Raises:
        HandOffTimeout: naming the first file still missing at the deadline.
    """
    deadline = time.monotonic() + timeout
    pause = FIRST_RETRY
    told = False
    for file in files:
        while not file.exists():
            left = deadline - time.monotonic()
            if left <= 0:
                raise HandOffTimeout(file, timeout)
            if not told and on_wait is not None:
                on_wait(file)
                told = True
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)


@dataclass(frozen=True)
class KeySet:
    """Keys merged from files, remembering which file gave each (for error messages)."""

    values: Mapping[str, str]
    origin: Mapping[str, Path]
    files: tuple[Path, ...]


def merge_key_files(files: Sequence[Path]) -> KeySet:
    """Every file's keys, later files winning.

    Raises:
        KeyFileError: as `read_key_file`.
    """
    values: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for file in files:
        for key, value in read_key_file(file).items():
            values[key] = value
            origin[key] = file
    return KeySet(values, origin, tuple(files))


def build_environment(
    inherited: Mapping[str, str], keys: KeySet, inject: Sequence[str]
) -> dict[str, str]:
    """The command's environment.

    Raises:
        MissingKey: an injected key has no value anywhere.
        InvalidInjectedValue: an injected value breaks the key rules.
    """
    env = {k: v for k, v in inherited.items() if k not in keys.values or k in inject}
    for key in inject:
        if key in keys.values:
            value, source = keys.values[key], str(keys.origin[key])
        elif key in inherited:
            value, source = inherited[key], "environment"
        else:
            raise MissingKey(key, keys.files)
        try:
            validate_key(key, value)
        except InvalidValue as exc:
            raise InvalidInjectedValue(source, exc) from exc
        env[key] = value
    return env
