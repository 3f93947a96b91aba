"""Turning validation errors into messages that help: one message per field (a union's
alternatives said once, not once per member), the line the key is on, and "did you
mean" for an unknown key or value — including the habits of the tools people come from
(docker compose, process-compose, supervisord, systemd). Pure."""

from __future__ import annotations

import difflib
import re
import signal
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from supervisor.errors import AtKey, Problem

# Another tool's key → ours.
KEY_HABITS = {
    "environment": "env",
    "env_file": "env_files (in [supervise])",
    "working_dir": "cwd",
    "workdir": "cwd",
    "directory": "cwd",
    "working_directory": "cwd",
    "cmd": "command",
    "args": "command",
    "autorestart": "restart",
    "restart_policy": "restart",
    "healthcheck": "ready",
    "readiness_probe": "ready",
    "startup_probe": "ready",
    "depends": "depends_on",
    "after": "depends_on",
    "requires": "depends_on",
    "startsecs": "start_seconds",
    "stopwaitsecs": "stop_timeout",
    "stop_grace_period": "stop_timeout",
    "stopsignal": "stop_signal",
    "ports": "port",
    "startretries": "max_failures",
    "disabled": "required",
}
# Another tool's value → ours, per field.
VALUE_HABITS: dict[str, dict[str, str]] = {
    "restart": {
        "unless-stopped": "always",
        "on_failure": "on-failure",
        "onfailure": "on-failure",
        "no": "never",
        "false": "never",
        "true": "always",
        "unexpected": "on-failure",
        "exit_on_failure": "on-failure",
    },
    "depends_on": {
        "process_healthy": "ready",
        "service_healthy": "ready",
        "healthy": "ready",
        "process_completed_successfully": "completed",
        "service_completed_successfully": "completed",
        "process_completed": "completed",
        "process_started": "started",
        "service_started": "started",
    },
}
_TAG = re.compile(
    r"(str|int|float|bool|list|dict|none|literal|constrained-[a-z]+|function-[a-z]+|nullable"
    r"|tagged-union|union|json-or-python|lax-or-strict|is-instance)(\[.*\])?"
)
_NOUNS = {
    "str": "a string",
    "list[str]": "a list of strings",
    "int": "an integer",
    "constrained-int": "an integer",
    "float": "a number",
    "constrained-float": "a number",
    "bool": "true or false",
}


def did_you_mean(value: str, choices: Iterable[str], habits: Mapping[str, str] = {}) -> str:
    """' (did you mean X?)', or '' when nothing is close."""
    options = list(choices)
    if value in habits:
        habit = habits[value]
        word = habit.split()[0]
        return f" (did you mean {word if word in options else habit}?)"
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _fields_at(root: type[BaseModel], location: list[str]) -> list[str]:
    """The keys allowed in the table at `location` (a dict's keys are free: [])."""
    model: Any = root
    parts = list(location)
    while parts and model is not None:
        part = parts.pop(0)
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        model = _model_in(annotation)
        if model is None and parts:  # a dict of models: the next part is a name
            inner = _dict_value_model(annotation)
            if inner is None:
                return []
            parts.pop(0)
            model = inner
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model of a field typed `Model` or `Model | None` (a dict of models is not)."""
    if typing.get_origin(annotation) is dict:
        return None
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    return _model_in(args[1]) if len(args) == 2 else None


def problems_from(
    exc: ValidationError, file: str, root: type[BaseModel], text: str = ""
) -> list[Problem]:
    """One problem per field at fault, each with the line of the key where it is known."""
    merged: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    problems = []
    for error in exc.errors():
        found = tuple(str(part) for part in error["loc"])
        at = error.get("ctx", {}).get("error")
        if isinstance(at, AtKey):  # about one key of the table: say which
            parts = [*found, *at.parts]
            problems.append(Problem(file, key_path(parts), at.reason, locate_line(text, parts)))
            continue
        if found[-1:] == ("[key]",):
            found = found[:-1]
        if len(found) > 1 and _TAG.fullmatch(found[-1]):
            found = found[:-1]  # a union's member: said with its siblings
        merged.setdefault(found, []).append(dict(error))
    for where, errors in merged.items():
        parts = list(where)
        message = _message(parts, errors, root)
        problems.append(Problem(file, key_path(parts), message, locate_line(text, parts)))
    return problems


def _message(parts: list[str], errors: list[dict[str, Any]], root: type[BaseModel]) -> str:
    error = errors[0]
    value = error.get("input")
    if len(errors) > 1:  # the alternatives of a union
        nouns = []
        for e in errors:
            tag = str(list(e["loc"])[-1])
            noun = _NOUNS.get(tag) or (
                " or ".join(str(e["ctx"]["expected"]).split(" or "))
                if e["type"] == "literal_error"
                else tag
            )
            if noun not in nouns:
                nouns.append(noun)
        return f"must be {' or '.join(nouns)} (got {_shown(value)})"
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    field = parts[-1] if parts else ""
    if kind == "extra_forbidden":
        return "unknown key" + did_you_mean(field, _fields_at(root, parts[:-1]), KEY_HABITS)
    if kind == "missing":
        return "required key is missing"
    if kind == "dict_type" and field == "depends_on" and isinstance(value, list):
        example = ", ".join(f'{v} = "started"' for v in value[:2] if isinstance(v, str))
        return f"is a table of conditions, not a list: depends_on = {{ {example} }}"
    if kind == "literal_error":
        owner = "depends_on" if len(parts) >= 2 and parts[-2] == "depends_on" else field
        expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        hint = did_you_mean(str(value), expected, VALUE_HABITS.get(owner, {}))
        return f"{message} (got {_shown(value)}){hint}"
    if field == "stop_signal" and isinstance(value, str):
        names = [s.name for s in signal.Signals]
        return message + did_you_mean(value.upper(), names)
    if not isinstance(value, dict) and repr(value) not in message:
        return f"{message} (got {_shown(value)})"
    return message


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\[\]-]+")


def key_path(parts: list[str]) -> str:
    """A dotted key path; a part that is not a plain name is quoted (a newline in a key
    must not break the message)."""
    return ".".join(p if _PLAIN_KEY.fullmatch(p) else repr(p) for p in parts)


_HEADER = re.compile(r"\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?")
_ASSIGN = re.compile(
    r"\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)
_KEY_PART = re.compile(r"[A-Za-z0-9_-]+|\"((?:[^\"\\]|\\.)*)\"|'([^']*)'")


def _split_key(text: str) -> list[str]:
    parts = []
    for match in _KEY_PART.finditer(text):
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        parts.append(quoted if quoted is not None else match.group(0))
    return parts


def locate_line(text: str, parts: list[str]) -> int | None:
    """The 1-based line where the key `parts` (or the nearest table holding it) is
    written, found by reading the TOML's headers and assignments; None if not found."""
    if not text or not parts:
        return None
    best, best_depth = None, 0
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.fullmatch(line)
        if header:
            table = _split_key(header.group(1))
            path = table
        else:
            assign = _ASSIGN.match(line)
            if not assign:
                continue
            path = table + _split_key(assign.group(1))
        depth = 0
        while depth < min(len(path), len(parts)) and path[depth] == parts[depth]:
            depth += 1
        if depth == len(path) and depth > best_depth:
            best, best_depth = number, depth
            if depth == len(parts):
                return number
    return best
