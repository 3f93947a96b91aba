"""Find, read and validate a stack: `supervise.toml`, `[tool.supervise]` in pyproject.toml,
or a bare Procfile; plus its env files. Pure apart from reading the files it is given.

Every problem found is collected and raised together as one `ConfigError`, each naming
the file, the key path and the value.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.config import locate
from supervisor.config.interpolate import TemplateSyntaxError, interpolate
from supervisor.config.locate import PROCFILE, PYPROJECT, STACK_FILE
from supervisor.config.procfile import BASE_PORT, parse_procfile
from supervisor.config.spec import Stack, port_number
from supervisor.errors import ConfigError, Problem

DEFAULT_ENV_FILE = ".env"


@dataclass(frozen=True)
class Selection:
    """What of a stack file is run: `--model M`, `run PROCESS...` and `-e FILE,...`."""

    models: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    env_files: tuple[str, ...] | None = None  # instead of `[supervise] env_files`


EVERYTHING = Selection()


@dataclass(frozen=True)
class LoadedStack:
    """A validated stack and everything read alongside it."""

    file: Path
    stack: Stack
    # Env files merged, then the supervisor's own environment on top: what `${VAR}` reads.
    env_files: Mapping[str, str]
    environ: Mapping[str, str]
    watched: tuple[Path, ...] = field(default=())

    @property
    def is_procfile(self) -> bool:
        return self.file.suffix != ".toml"

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    @property
    def variables(self) -> dict[str, str]:
        return {**self.env_files, **self.environ}

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def find_stack_file(directory: Path) -> Path:
    """The stack file for `directory`: its own, or the nearest parent's (see `locate`).

    Raises:
        ConfigError: there is none.
    """
    found = locate.find_stack_file(directory)
    if found is not None:
        return Path(found)
    raise ConfigError(
        [
            Problem(
                str(directory),
                "",
                f"no {STACK_FILE}, [tool.supervise] in {PYPROJECT}, or {PROCFILE} here or "
                "in a parent directory (up to the repository root); pass -c FILE",
            )
        ]
    )


def load_stack(
    file: Path | None,
    environ: Mapping[str, str],
    env_files: tuple[str, ...] | None = None,
) -> LoadedStack:
    """Read and validate a stack.

    Args:
        file: the stack file; None looks in the current directory.
        environ: the supervisor's own environment (never modified).
        env_files: env files to read instead of the stack's `[supervise] env_files`.

    Returns:
        The validated stack.

    Raises:
        ConfigError: with every problem found.
    """
    path = (file if file is not None else find_stack_file(Path.cwd())).absolute()
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not text
    except OSError as exc:
        raise ConfigError([Problem(name, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(name, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from exc

    problems: list[Problem] = []
    raw: dict[str, Any]
    if path.suffix == ".toml":
        with loading(name, "parsing TOML"):
            raw = _stack_table(path, _parse_toml(text, name))
    else:
        with loading(name, "reading the Procfile"):
            # honcho's rule: PORT from the env files, then the environment, else 5000.
            early, _, _ = _read_env_files(list(env_files or [DEFAULT_ENV_FILE]), False, path)
            base_port = _procfile_base_port({**environ, **early}, name)
            raw, problems = parse_procfile(text, name, base_port)

    from pydantic import ValidationError  # validation only: never in a running supervisor

    from supervisor.config.model import StackModel, to_spec

    with loading(name, "validating"):
        try:
            stack = to_spec(StackModel.model_validate(raw))
        except ValidationError as exc:
            from supervisor.config.explain import problems_from  # only for a bad file

            problems.extend(
                problems_from(exc, name, StackModel, text if path.suffix == ".toml" else "")
            )
            raise ConfigError(problems) from exc
    if problems:
        raise ConfigError(problems)

    explicit = env_files is not None or stack.supervise.env_files is not None
    names = list(env_files or stack.supervise.env_files or ([] if explicit else [".env"]))
    with loading(name, "reading env files"):
        values, watched, env_problems = _read_env_files(names, explicit, path)
    if env_problems:
        raise ConfigError(env_problems)
    loaded = LoadedStack(path, stack, values, dict(environ), (path, *watched))
    with loading(name, "checking templates"):
        _check_templates(loaded)
    return loaded


MAX_DEPTH = 16  # tables and arrays in a stack file nest a few levels; deeper is a mistake


@contextlib.contextmanager
def loading(file: str, what: str) -> Iterator[None]:
    """Whatever goes wrong while `what` is done to `file` is a ConfigError naming both:
    no stack file, however hostile, ends in a traceback."""
    try:
        yield
    except ConfigError:
        raise
    except RecursionError as exc:
        raise ConfigError([Problem(file, "", f"{what}: nested too deeply")]) from exc
    except Exception as exc:
        raise ConfigError([Problem(file, "", f"{what} failed: {exc!r}")]) from exc


def _parse_toml(text: str, name: str) -> dict[str, Any]:
    import tomllib  # only where a file is read: never resident in a running supervisor

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(name, "", f"invalid TOML: {exc}")]) from exc
    except RecursionError as exc:
        raise ConfigError(
            [Problem(name, "", f"invalid TOML: nested deeper than {MAX_DEPTH} levels")]
        ) from exc
    where = _too_deep(document, [])
    if where is not None:
        raise ConfigError(
            [Problem(name, ".".join(where), f"nested deeper than {MAX_DEPTH} levels")]
        )
    return document


def _too_deep(value: object, path: list[str]) -> list[str] | None:
    """The key path where `value` nests deeper than MAX_DEPTH, or None."""
    if len(path) > MAX_DEPTH:
        return path[:MAX_DEPTH]
    items: list[tuple[str, object]] = []
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"[{i}]", v) for i, v in enumerate(value)]
    for key, item in items:
        found = _too_deep(item, [*path, key])
        if found is not None:
            return found
    return None


def _stack_table(path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """The stack's table: the document, or `[tool.supervise]` of a pyproject.toml."""
    if path.name != PYPROJECT:
        return document
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError([Problem(str(path), "tool", f"must be a table, got {tool!r}")])
    if "supervise" not in tool:
        raise ConfigError([Problem(str(path), "", "no [tool.supervise] table")])
    table = tool["supervise"]
    if not isinstance(table, dict):
        raise ConfigError([Problem(str(path), "tool.supervise", f"must be a table, got {table!r}")])
    return table


def _procfile_base_port(environ: Mapping[str, str], name: str) -> int:
    value = environ.get("PORT", "").strip()
    if not value:
        return BASE_PORT
    port = port_number(value)
    if port is None:
        raise ConfigError([Problem(name, "PORT", f"environment PORT {value!r} is not a port")])
    return port


def _read_env_files(
    names: list[str], explicit: bool, path: Path
) -> tuple[dict[str, str], list[Path], list[Problem]]:
    """The env files' variables merged (later files win), the files to watch, problems.
    A missing file is a problem only when it was named explicitly."""
    from dotenv import dotenv_values  # python-dotenv, brought by pydantic-settings

    merged: dict[str, str] = {}
    watched: list[Path] = []
    problems: list[Problem] = []
    for index, entry in enumerate(names):
        env_path = Path(entry).expanduser()
        env_path = env_path if env_path.is_absolute() else path.parent / env_path
        watched.append(env_path)
        if not env_path.is_file():
            if explicit:
                problems.append(
                    Problem(
                        str(path),
                        f"supervise.env_files[{index}]",
                        f"env file {str(env_path)!r} does not exist",
                    )
                )
            continue
        try:
            text = env_path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(env_path), "", f"cannot read env file: {exc}"))
            continue
        bad = _unparsable_lines(text)
        if bad:
            problems.extend(
                Problem(str(env_path), f"line {number}", f"cannot parse {line!r} as KEY=VALUE")
                for number, line in bad
            )
            continue
        for key, value in dotenv_values(stream=io.StringIO(text), interpolate=False).items():
            merged[key] = "" if value is None else value
    return merged, watched, problems


def _unparsable_lines(text: str) -> list[tuple[int, str]]:
    """Lines of an env file that python-dotenv would skip with a warning on stderr."""
    from dotenv.parser import parse_stream

    lines = text.splitlines()
    bad = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            number = binding.original.line
            bad.append((number, lines[number - 1].strip() if number <= len(lines) else ""))
    return bad


def _check_templates(loaded: LoadedStack) -> None:
    """Syntax of every template, and `${VAR}` in the settings, before anything starts."""
    name = str(loaded.file)
    problems: list[Problem] = []
    stack = loaded.stack

    def check(where: str, template: str) -> None:
        try:
            interpolate(template, lambda _name: "")
        except TemplateSyntaxError as exc:
            problems.append(Problem(name, where, str(exc)))

    for key, value in stack.env.items():
        check(f"env.{key}", value)
    for pname, process in stack.processes.items():
        commands = [process.command] if isinstance(process.command, str) else process.command
        for command in commands:
            check(f"processes.{pname}.command", command)
        if process.cwd is not None:
            check(f"processes.{pname}.cwd", process.cwd)
        for key, value in process.env.items():
            check(f"processes.{pname}.env.{key}", value)
        if process.ready is not None:
            for kind in ("tcp", "http", "exec"):
                value = getattr(process.ready, kind)
                for item in [value] if isinstance(value, str) else value or []:
                    check(f"processes.{pname}.ready.{kind}", item)
    for field_name in ("http", "control_socket"):
        value = getattr(stack.supervise, field_name)
        if value is None:
            continue
        try:
            interpolate(value, loaded.variables.get)
        except TemplateSyntaxError as exc:
            problems.append(Problem(name, f"supervise.{field_name}", str(exc)))
        except KeyError as exc:
            problems.append(
                Problem(name, f"supervise.{field_name}", f"unresolved reference ${{{exc.args[0]}}}")
            )
    if problems:
        raise ConfigError(problems)


def settings_value(loaded: LoadedStack, field_name: str) -> str | None:
    """A `[supervise]` string with `${VAR}` rendered (checked at load, so it resolves)."""
    value = getattr(loaded.stack.supervise, field_name)
    if value is None:
        return None
    return interpolate(str(value), loaded.variables.get)


def with_own_virtualenv(
    environ: Mapping[str, str], executable: str, prefix: str, base_prefix: str
) -> dict[str, str]:
    """`environ` with the virtualenv `supervise` runs from first on PATH, as activation
    and `uv run` do, so that a unit's `python` is the one with the project installed. A
    stack that sets PATH itself (`[env]`, a process's `env`) still wins: those layers
    come later."""
    env = dict(environ)
    if prefix == base_prefix:  # not in a virtualenv
        return env
    bin_dir = os.path.dirname(executable)
    path = env.get("PATH", os.defpath)
    if bin_dir not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
    return env
