"""Exceptions, one per failure mode; each message is built from its fields and names the
file, key, unit or value at fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a stack: where (file, key path or line) and what. `file` is
    empty where the one who finds it does not know the file (a port at bind time)."""

    file: str
    where: str
    message: str
    line: int | None = None  # in the file, where it is known

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        location = ": ".join(part for part in (place, self.where) if part)
        return f"{location}: {self.message}" if location else self.message


class SuperviseError(Exception):
    """Base of every error the supervisor reports to a user."""


class ConfigError(SuperviseError):
    """A stack that cannot run; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UnresolvedReference(SuperviseError):
    """An interpolation named something that does not exist (never rendered as '')."""

    def __init__(self, unit: str, field: str, name: str) -> None:
        self.unit, self.field, self.name = unit, field, name
        super().__init__(f"{unit}: {field}: unresolved reference ${{{name}}}")


class MissingModelKey(SuperviseError, LookupError):
    """A unit needs a model key that no source has provided yet: it waits, it does not fail."""

    def __init__(self, model: str, key: str) -> None:
        self.model, self.key = model, key
        super().__init__(f"waiting for {model} {key}")

    def __str__(self) -> str:  # LookupError would quote the message
        return f"waiting for {self.model} {self.key}"


class InvalidValue(SuperviseError):
    """A name or value that breaks the rules (model names, signatures, env keys)."""

    def __init__(self, what: str, value: str, rule: str) -> None:
        self.what, self.value, self.rule = what, value, rule
        super().__init__(f"{what} {value!r} is invalid: {rule}")


class AtKey(ValueError):
    """Raised inside a validator of a table (`models`, `processes`) about one key of it, so
    that the message names that key and its line, not the whole table."""

    def __init__(self, parts: tuple[str, ...], reason: str) -> None:
        self.parts, self.reason = parts, reason
        super().__init__(reason)


class ControlError(SuperviseError):
    """A control request that cannot be done. `kind` is one of KINDS; front ends map it
    to their own codes (HTTP statuses live in the routes, not here)."""

    KINDS = frozenset(
        {
            "bad_request",
            "forbidden",
            "not_found",
            "conflict",
            "invalid",
            "invalid_config",
            "unavailable",
        }
    )

    def __init__(self, kind: str, message: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown control error kind {kind!r}")
        self.kind, self.message = kind, message
        super().__init__(message)
