"""`supervise`'s command line: verbs, options, help. Standard library only (client
commands must start fast); `supervisor.cli` turns the parsed arguments into calls."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from supervisor import __version__
from supervisor.quickargs import MAX_SECONDS

TYPE_CHECKING = False  # importing typing costs a client command 4 ms
if TYPE_CHECKING:
    from typing import Any


def seconds(text: str) -> float:
    """A positive, finite number of seconds, at most a day: `nan`, `inf`, 0 and more
    than a day are refused by name."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_SECONDS:g} seconds (a day), got {text!r}"
        )
    return value


STACK_HELP = (
    "stack file (default: supervise.toml, pyproject.toml [tool.supervise] or Procfile, "
    "searched from the current directory up to the repository root)"
)


def _stack_options(parser: argparse.ArgumentParser, *, top: bool, procfile: bool) -> None:
    """`-c FILE` (and, where a Procfile may be run, honcho's `-f FILE` and `-e FILE`),
    before or after the verb: the verb's copy only overrides when given."""
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument("-c", "--config", metavar="FILE", default=default, help=STACK_HELP)
    if procfile:
        parser.add_argument(
            "-f",
            "--procfile",
            metavar="FILE",
            default=default,
            help="the same as -c, as honcho spells it",
        )
        parser.add_argument(
            "-e",
            "--env",
            metavar="FILE[,FILE]",
            default=default,
            help="env files instead of [supervise] env_files (default .env)",
        )


VERBS = frozenset(
    {
        *("run", "check", "status", "set", "launch", "drop", "restart", "stop", "start"),
        *("reload", "logs", "why", "export", "exec", "wait"),
    }
)
_VALUED = frozenset({"-c", "--config", "-f", "--procfile", "-e", "--env"})


def verb_of(argv: Sequence[str]) -> str | None:
    """The verb on a command line (options before it skipped), if it is a known one."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in VERBS else None
    return None


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it, without importing
    shutil (and its compression modules: 4 ms a client command) as argparse would."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns or 80


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=_columns() - 2)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (its subparsers too) whose help formatter measures the terminal
    without shutil."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _formatter)
        super().__init__(*args, **kwargs)


class _Skipped:
    """A verb that is not on the command line: its options are never built (argparse
    costs a client command ~1 ms a verb)."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The verbs, their options and their help; no behaviour. With `argv`, only the verb
    it names is built (all of them when it names none, for the help and the errors)."""
    only = verb_of(argv) if argv is not None else None
    parser = _Parser(
        prog="supervise",
        description="Start MCP tool servers and agents in order, with each model's runtime "
        "config injected; restart exactly what a change affects; leave nothing behind.",
    )
    parser.add_argument("--version", action="version", version=f"supervise {__version__}")
    _stack_options(parser, top=True, procfile=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from supervisor.export.cli import add_commands  # argparse only: `wait` starts fast

    add_commands(sub, only)

    def add(name: str, help_text: str, *, procfile: bool = False) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return _Skipped()  # type: ignore[return-value]  # only add_argument is called
        command = sub.add_parser(name, help=help_text, description=help_text)
        _stack_options(command, top=False, procfile=procfile)
        return command

    def timeout(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--timeout",
            type=seconds,
            default=None,
            metavar="S",
            help="wait at most S seconds (default 60); answers at once when the outcome is known",
        )

    run = add("run", "run the stack (or some of its processes) in the foreground", procfile=True)
    run.add_argument(
        "processes",
        nargs="*",
        metavar="PROCESS",
        help="run only these processes and what they depend on (honcho's `start web`)",
    )
    run.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="run only this model's units (and global ones); repeatable",
    )
    run.add_argument("--log-format", choices=["text", "json"], default=None)
    run.add_argument(
        "--exit-on-end",
        action="store_true",
        help="stop everything when any unit ends, and exit with its code (honcho's way)",
    )
    add("check", "validate the stack and print the plan", procfile=True)

    status = add("status", "units, states, pids, ports, restarts, ready, cpu, rss")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--watch",
        nargs="?",
        type=seconds,
        const=1.0,
        default=None,
        metavar="S",
        help="refresh every S seconds (default 1) until Ctrl-C",
    )
    status.add_argument("unit", nargs="?", help="one unit only")

    set_ = add("set", "change a model's runtime config; wait until restarted units are ready")
    set_.add_argument("model")
    set_.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    set_.add_argument("--unset", action="append", default=[], metavar="KEY")
    set_.add_argument("--no-wait", action="store_true")
    set_.add_argument(
        "--no-rollback",
        action="store_true",
        help="keep the new value even if a restarted unit fails (its model may then fail)",
    )
    timeout(set_)

    launch = add("launch", "start a model's units at runtime; prints their ports as JSON")
    launch.add_argument("model")
    launch.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    timeout(launch)

    drop = add("drop", "stop and forget a model's units")
    drop.add_argument("model")

    for verb in ("restart", "stop", "start"):
        command = add(verb, f"{verb} one unit, or every unit of a model")
        command.add_argument("unit", metavar="UNIT|MODEL")
        if verb != "stop":
            timeout(command)
    reload = add("reload", "re-read the stack file (same as SIGHUP)")
    timeout(reload)
    logs = add("logs", "recent and live output, the supervisor's own events included")
    logs.add_argument("unit", nargs="?")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100, metavar="N")
    logs.add_argument("--since", metavar="WHEN", help="only newer lines: 90s, 10m, 2h or a time")
    logs.add_argument("--grep", metavar="REGEX", help="only lines that match")
    logs.add_argument("--no-events", action="store_true", help="only the units' own output")
    why = add("why", "explain a unit's state: what it waits for, why it failed, what unblocks it")
    why.add_argument("unit")
    return parser
