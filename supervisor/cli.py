"""`supervise`: argv → calls → exit codes. No logic of its own: it wires the loaded
stack, the supervisor, its live config and its front ends for `run`, and turns client
commands into calls of `supervisor.client`.

Client commands import only `supervisor.client` and `supervisor.output.format`
(standard library), so `supervise status` answers without paying for pydantic or anyio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NO_SUPERVISOR = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer cut off


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervise",
        description="Start MCP tool servers and agents in order, with each model's runtime "
        "config injected; restart exactly what a change affects; leave nothing behind.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "-c",
            "--config",
            type=Path,
            metavar="FILE",
            help="stack file (default: supervise.toml, pyproject.toml "
            "[tool.supervise] or Procfile in the current directory)",
        )
        return command

    def timeout(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--timeout",
            type=float,
            default=None,
            metavar="S",
            help="wait at most S seconds (default 60); answers at once when the outcome is known",
        )

    run = add("run", "run the stack in the foreground")
    run.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="run only this model's units (and global ones); repeatable",
    )
    run.add_argument("--log-format", choices=["text", "json"], default=None)
    add("check", "validate the stack and print the plan")

    status = add("status", "units, states, pids, ports, restarts, ready, cpu, rss")
    status.add_argument("--json", action="store_true", help="machine-readable output")
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
    logs = add("logs", "recent and live output")
    logs.add_argument("unit", nargs="?")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100)
    why = add("why", "explain a unit's state: what it waits for, why it failed, what unblocks it")
    why.add_argument("unit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "check":
            return _check(args)
        return _client_command(args)
    except BrokenPipeError:
        # The reader went away (`supervise logs | head`): stop quietly, as git does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _environ() -> dict[str, str]:
    from supervisor.config.load import with_own_virtualenv

    return with_own_virtualenv(os.environ, sys.executable, sys.prefix, sys.base_prefix)


def _check(args: argparse.Namespace) -> int:
    from supervisor.check import load_checked
    from supervisor.errors import ConfigError

    try:
        _, report = load_checked(args.config, _environ())
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    print("\n".join(report.lines))
    for warning in report.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def _print_problems(exc: Exception) -> None:
    problems = getattr(exc, "problems", None) or [exc]
    print(f"supervise: {len(problems)} error(s) in the stack:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    import anyio

    from supervisor.check import load_checked
    from supervisor.config.load import settings_value
    from supervisor.control.server import serve_control, serve_health
    from supervisor.errors import ConfigError
    from supervisor.output.printer import Printer
    from supervisor.runtime.live import LiveConfig
    from supervisor.runtime.signals import handle_signals
    from supervisor.runtime.supervisor import FrontEnd, Supervisor
    from supervisor.runtime.watch import watch_stack_files

    try:
        loaded, report = load_checked(args.config, _environ(), args.model)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    printer = Printer(args.log_format or loaded.stack.supervise.log_format)
    for warning in report.warnings:
        printer.note(f"warning: {warning}")
    supervisor = Supervisor(loaded, printer, only_models=args.model)
    live = LiveConfig(supervisor)
    front_ends: list[FrontEnd] = [
        partial(handle_signals, live),
        partial(serve_control, live, supervisor.registry_link),
        live.serve,
    ]
    address = settings_value(loaded, "http")
    if address:
        front_ends.append(partial(serve_health, live, address, printer.note))
    front_ends.append(partial(watch_stack_files, live))
    code = EXIT_FAILED
    try:
        code = anyio.run(supervisor.run, front_ends)
    except* ConfigError as group:
        for problem in _leaves(group):
            _print_problems(problem)
        code = EXIT_CONFIG
    except* KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    return code


class UsageError(Exception):
    pass


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    """The exceptions in a (possibly nested) group, without the groups."""
    leaves: list[Exception] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


def _pairs(items: Sequence[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        keys[key] = value
    return keys


def _client_command(args: argparse.Namespace) -> int:
    from supervisor import client

    try:
        if args.config is not None:
            socket_path, how = client.socket_from_stack_file(args.config)
            api = client.Client(socket_path, how=how)
        else:
            api = client.Client()
        return _dispatch(api, args)
    except UsageError as exc:
        print(f"supervise: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except client.NoSupervisorError as exc:
        print(f"supervise: {exc}", file=sys.stderr)
        return EXIT_NO_SUPERVISOR
    except client.ClientError as exc:
        print(f"supervise: {exc}", file=sys.stderr)
        return EXIT_CONFIG if exc.code == "invalid_config" else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dispatch(api: Any, args: argparse.Namespace) -> int:
    from supervisor.output import format as fmt

    command = args.command
    if command == "status":
        answer = api.status(args.unit)
        print(json.dumps(answer, indent=2) if args.json else fmt.format_status(answer))
        return EXIT_OK
    if command == "set":
        answer = api.set(
            args.model,
            _pairs(args.pairs),
            unset=args.unset,
            wait=not args.no_wait,
            timeout=args.timeout,
            rollback=not args.no_rollback,
        )
        print(fmt.format_change(answer))
        return EXIT_FAILED if answer.get("failed") or answer.get("rolled_back") else EXIT_OK
    if command == "launch":
        answer = api.launch(args.model, _pairs(args.pairs), timeout=args.timeout)
        print(json.dumps(answer, indent=2))
        return EXIT_FAILED if answer.get("failed") else EXIT_OK
    if command == "drop":
        print(fmt.format_change(api.drop(args.model)))
        return EXIT_OK
    if command == "stop":
        print(api.stop(args.unit).get("message", ""))
        return EXIT_OK
    if command in ("start", "restart"):
        call = api.start if command == "start" else api.restart
        answer = call(args.unit, args.timeout)
        print(fmt.format_change({"message": answer.get("message"), "failed": answer.get("failed")}))
        return EXIT_FAILED if answer.get("failed") else EXIT_OK
    if command == "reload":
        answer = api.reload(args.timeout)
        print(fmt.format_change(answer))
        return EXIT_FAILED if answer.get("failed") or answer.get("rolled_back") else EXIT_OK
    if command == "logs":
        for record in api.logs(args.unit, lines=args.lines, follow=args.follow):
            print(fmt.format_log(record), flush=args.follow)
        return EXIT_OK
    if command == "why":
        print(api.why(args.unit)["why"])
        return EXIT_OK
    raise AssertionError(command)


if __name__ == "__main__":
    raise SystemExit(main())
