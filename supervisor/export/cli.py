"""`supervise export`, `supervise exec` and `supervise wait` on the command line.

`add_commands(sub)` adds the three subcommands to the main parser and
`run_command(args)` runs them (None for any other command), so `supervisor.cli` wires
them in two lines; `python -m supervisor.export.cli ...` runs them on their own.
Importing this module costs argparse only: `wait` runs as a probe, so everything else is
imported by the command that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # importing typing would cost every client command 4 ms
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

COMMANDS = ("export", "exec", "wait")


def _path(text: str) -> Path:
    """A Path, with pathlib imported only when an option is given (client commands that
    never take one stay quick to start)."""
    from pathlib import Path

    return Path(text)


TARGETS = ("kubernetes", "systemd", "compose")


def add_commands(sub: argparse._SubParsersAction[Any], only: str | None = None) -> None:
    """Add `export`, `exec` and `wait` to a `supervise` subparsers object (just `only`,
    when the command line names one verb)."""
    for name, add in (("export", _add_export), ("exec", _add_exec), ("wait", _add_wait)):
        if only is None or only == name:
            add(sub)


def run_command(args: argparse.Namespace) -> int | None:
    """The exit code of `export`, `exec` or `wait`; None for another command."""
    command = getattr(args, "command", None)
    if command == "wait":
        from supervisor.shims.commands import run_wait

        return run_wait(args)
    if command == "exec":
        from supervisor.shims.commands import run_exec

        return run_exec(args)
    if command == "export":
        from supervisor.export.run import run_export

        return run_export(args)
    return None


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "generate what Kubernetes, systemd or Docker Compose run, keeping the start gate"
    export = sub.add_parser("export", help=text, description=text)
    targets = export.add_subparsers(dest="target", required=True, metavar="TARGET")
    for target in TARGETS:
        parser = targets.add_parser(target, help=f"export for {target}")
        # SUPPRESS: `supervise -c FILE export ...` (before the verb) is not undone here.
        parser.add_argument(
            "-c",
            "--config",
            type=_path,
            metavar="FILE",
            help="stack file",
            default=argparse.SUPPRESS,
        )
        parser.add_argument(
            "--model", action="append", default=[], metavar="M", help="only this model; repeatable"
        )
        parser.add_argument(
            "-o", "--output", type=_path, required=True, metavar="DIR", help="directory to write"
        )
        parser.add_argument(
            "--report", type=_path, metavar="FILE", help="write what could not be mapped as JSON"
        )
        parser.add_argument(
            "--prefix", default="supervise", metavar="NAME", help="name prefix (default: supervise)"
        )
        parser.add_argument(
            "--workdir",
            metavar="DIR",
            help="the stack's directory on the target (default: /app for containers, the "
            "stack file's directory for systemd)",
        )
        if target in ("kubernetes", "compose"):
            parser.add_argument(
                "--image",
                default="supervise-stack:latest",
                metavar="IMG",
                help="image with the stack and supervise installed",
            )
        if target == "kubernetes":
            parser.add_argument("--namespace", metavar="NS")
            parser.add_argument("--mode", choices=("native", "embedded"), default="native")
        if target == "systemd":
            parser.add_argument(
                "--systemd-version",
                type=int,
                default=252,
                metavar="N",
                help="the target's systemd version (default 252, Debian 12)",
            )
            parser.add_argument(
                "--supervise",
                default="/usr/local/bin/supervise",
                metavar="PATH",
                help="absolute path of the supervise executable on the target",
            )


def _add_exec(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "wait for hand-off files, inject exactly the named keys, then exec the command"
    parser = sub.add_parser("exec", help=text, description=text)
    parser.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="F",
        help="a key file (KEY=VALUE lines) that must exist; repeatable",
    )
    parser.add_argument(
        "--wait-file",
        action="append",
        default=[],
        metavar="F",
        help="a hand-off file to wait for, then read as a key file; repeatable",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for all hand-off files (default 60)",
    )
    parser.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="K,K",
        help="the keys the command gets from the files or the environment",
    )
    parser.add_argument(
        "--publish-to",
        metavar="F",
        help="take what the command publishes through $SUPERVISE_ENV into F when it exits 0",
    )
    parser.add_argument("--ready-log", metavar="REGEX", help="ready when a line of output matches")
    parser.add_argument(
        "--ready-notify",
        action="store_true",
        help="ready when the command sends READY=1 to $NOTIFY_SOCKET",
    )
    parser.add_argument(
        "--ready-file", metavar="F", help="create F once ready, remove it when the command exits"
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")


def _add_wait(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = (
        "wait until a TCP port accepts, an HTTP URL answers 2xx/3xx, a file exists or a "
        "command exits 0"
    )
    parser = sub.add_parser("wait", help=text, description=text)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tcp", metavar="HOST:PORT")
    which.add_argument("--http", metavar="URL")
    which.add_argument(
        "--mcp", metavar="URL", help="an MCP endpoint answers initialize and tools/list"
    )
    which.add_argument("--file", metavar="F")
    which.add_argument("--exec", metavar="CMD", help="a command (one shell-quoted string)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds for the whole wait; 0 tries once (default 60)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.05,
        metavar="S",
        help="longest pause between attempts (default 0.05)",
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supervise")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub)
    args = parser.parse_args(argv)
    code = run_command(args)
    return 2 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
