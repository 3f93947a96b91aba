"""`supervise`: argv → calls → exit codes. No logic of its own: it wires the loaded
stack, the supervisor, its live config and its front ends for `run`, and turns client
commands into calls of `supervisor.client`.

Client commands import only `supervisor.quickargs` (their plain command lines, without
argparse), `supervisor.client` (JSON through `supervisor.jsonwire`, without `re`) and
`supervisor.output.tables`: `supervise status` costs little more than the interpreter.
"""

from __future__ import annotations

import os
import sys

from supervisor import quickargs

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a client 4 ms
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NO_SUPERVISOR = 3
EXIT_INTERRUPTED = 130
# Error answers that mean "what you asked is malformed" (exit 2), not "it failed" (exit 1).
BAD_INPUT = frozenset({"invalid_config", "invalid", "bad_request"})
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer cut off


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args: Any = quickargs.parse(words)  # the everyday client command lines, at once
    if args is None:
        from supervisor.arguments import build_parser

        args = build_parser(words).parse_args(words)
    try:
        _require_working_directory()
        if args.command in ("export", "exec", "wait"):
            from supervisor.export.cli import run_command

            code = run_command(args)
            assert code is not None, args.command
            return code
        if args.command == "run":
            return _run(args)
        if args.command == "check":
            return _check(args)
        return _client_command(args)
    except UsageError as exc:
        print(f"supervise: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`supervise logs | head`): stop quietly, as git does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _require_working_directory() -> None:
    """Relative paths, and finding the stack file, start from the current directory:
    one that a deploy removed after the shell entered it is said so, not a traceback."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise UsageError(
            "the current directory no longer exists (it was removed after this shell"
            " entered it); cd to one that does"
        ) from None


def _warn_if_supervisord_is_installed() -> None:
    """supervisord's distribution imports as `supervisor` too: pip merges the two
    packages into one directory, and uninstalling either deletes files of the other."""
    from importlib import metadata

    try:
        found = metadata.distribution("supervisor")
    except metadata.PackageNotFoundError:
        return
    print(
        f"supervise: warning: supervisord ({found.metadata['Name']} {found.version}) is "
        "installed in this environment; both import as `supervisor`, so each can break the "
        "other (uninstalling supervisord deletes supervise's files). Give each its own "
        "virtualenv: `pip uninstall supervisor && pip install --force-reinstall supervise`.",
        file=sys.stderr,
    )


def _environ() -> dict[str, str]:
    from supervisor.config.load import with_own_virtualenv

    return with_own_virtualenv(os.environ, sys.executable, sys.prefix, sys.base_prefix)


def _stack_path(args: argparse.Namespace) -> str | None:
    """`-c FILE` or `-f FILE` (honcho's spelling of the same)."""
    given = [p for p in (getattr(args, "config", None), getattr(args, "procfile", None)) if p]
    if len(given) > 1 and given[0] != given[1]:
        raise UsageError(f"-c {given[0]} and -f {given[1]} name two stack files; give one")
    return given[0] if given else None


def _stack_file(args: argparse.Namespace) -> Any:
    """The stack file given, as a Path (None: search for it)."""
    from pathlib import Path

    given = _stack_path(args)
    return Path(given) if given is not None else None


def _selection(args: argparse.Namespace) -> Any:
    from supervisor.config.load import Selection

    env = getattr(args, "env", None)
    return Selection(
        models=tuple(getattr(args, "model", ())),
        processes=tuple(getattr(args, "processes", ())),
        env_files=tuple(e.strip() for e in env.split(",") if e.strip()) if env else None,
    )


def _check(args: argparse.Namespace) -> int:
    from supervisor.check import load_checked
    from supervisor.errors import ConfigError

    _warn_if_supervisord_is_installed()
    try:
        _, report = load_checked(_stack_file(args), _environ(), _selection(args))
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


def _load_checked(args: argparse.Namespace) -> Any:
    """What `run` validates (in the child of `validator.start`)."""
    from supervisor.check import load_checked

    _warn_if_supervisord_is_installed()
    return load_checked(_stack_file(args), _environ(), _selection(args))


def _preload_while_validating() -> None:
    """What `run` would import once the stack is known (the event loop anyio starts,
    the file watcher), imported while the child validates instead of after."""
    import contextlib

    import watchfiles  # noqa: F401

    with contextlib.suppress(ImportError):
        import anyio._backends._asyncio  # noqa: F401  (what anyio.run imports)


def _run(args: argparse.Namespace) -> int:
    from functools import partial

    from supervisor import check  # noqa: F401  (before the fork: both processes need it)
    from supervisor.config import validator

    # The stack is validated in a child while this process imports the runtime; the
    # validation library (pydantic) is never imported here.
    _stack_path(args)  # -c and -f that disagree are a usage error, said here
    validating = validator.start(partial(_load_checked, args))
    selection = _selection(args)

    import anyio

    from supervisor.config.load import settings_value
    from supervisor.control.http import Limits
    from supervisor.control.server import serve_control, serve_health
    from supervisor.errors import ConfigError
    from supervisor.output.printer import Printer
    from supervisor.runtime.live import LiveConfig
    from supervisor.runtime.signals import handle_signals
    from supervisor.runtime.supervisor import FrontEnd, Supervisor
    from supervisor.runtime.watch import watch_stack_files

    _preload_while_validating()
    try:
        loaded, report = validating.result()
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    printer = Printer(args.log_format or loaded.stack.supervise.log_format)
    supervisor = Supervisor(loaded, printer, selection=selection, exit_on_end=args.exit_on_end)
    for warning in report.warnings:
        supervisor.note(f"warning: {warning}")
    live = LiveConfig(supervisor)
    settings = loaded.stack.supervise
    limit = Limits(settings.max_connections, settings.request_timeout)
    front_ends: list[FrontEnd] = [
        partial(handle_signals, live),
        partial(
            serve_control,
            live,
            supervisor.registry_link,
            limit,
            supervisor.note,
            bound=supervisor.socket_bound,
        ),
        live.serve,
    ]
    address = settings_value(loaded, "http")
    if address:
        front_ends.append(partial(serve_health, live, address, limit, supervisor.note))
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
        stack = _stack_path(args)
        if stack is not None:
            from supervisor.socket_registry import socket_from_stack_file

            try:
                socket_path, how = socket_from_stack_file(stack, must_exist=True)
            except FileNotFoundError:
                raise UsageError(f"{stack}: no such file, and no supervisor runs it") from None
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
        return EXIT_CONFIG if exc.code in BAD_INPUT else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dispatch(api: Any, args: argparse.Namespace) -> int:
    from supervisor.output import tables as fmt

    command = args.command
    if command == "status":
        if args.watch is not None:
            return _watch_status(api, args)
        answer = api.status(args.unit)
        print(_json(answer) if args.json else fmt.format_status(answer))
        return EXIT_OK
    if command == "set":
        pairs = _pairs(args.pairs)
        if not pairs and not args.unset:
            raise UsageError("set needs KEY=VALUE or --unset KEY")
        if both := sorted(set(pairs) & set(args.unset)):
            raise UsageError(f"{', '.join(both)} is both set and unset")
        answer = api.set(
            args.model,
            pairs,
            unset=args.unset,
            wait=not args.no_wait,
            timeout=args.timeout,
            rollback=not args.no_rollback,
        )
        print(fmt.format_change(answer, waited=not args.no_wait))
        return EXIT_FAILED if answer.get("failed") or answer.get("rolled_back") else EXIT_OK
    if command == "launch":
        answer = api.launch(args.model, _pairs(args.pairs), timeout=args.timeout)
        print(_json(answer))
        failed = answer.get("failed") or {}
        for unit, reason in failed.items():
            print(f"supervise: {unit}: {reason}", file=sys.stderr)
        if failed:
            print(
                f"supervise: model {args.model} stays launched; "
                f"`supervise drop {args.model}` removes it",
                file=sys.stderr,
            )
        return EXIT_FAILED if failed else EXIT_OK
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
        since = _since(args.since) if args.since else None
        records = api.logs(
            args.unit,
            lines=args.lines,
            follow=args.follow,
            events=not args.no_events,
            since=since,
            grep=args.grep,
        )
        for record in records:
            print(fmt.format_log(record), flush=args.follow)
        return EXIT_OK
    if command == "why":
        print(api.why(args.unit)["why"])
        return EXIT_OK
    raise AssertionError(command)


def _json(answer: Any, indent: int | None = 2) -> str:
    import json

    return json.dumps(answer, indent=indent)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> float:
    """A wall-clock time from `90s`, `10m`, `2h`, `1d`, `HH:MM[:SS]` (today) or epoch."""
    import re
    import time

    ago = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text)
    if ago:
        return time.time() - float(ago.group(1)) * _UNITS[ago.group(2)]
    clock = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?", text)
    if clock:
        hour, minute, second = (int(g or 0) for g in clock.groups())
        now = time.localtime()
        return time.mktime((*now[:3], hour, minute, second, 0, 0, -1))
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"--since: expected 90s, 10m, 2h, 1d, HH:MM or a time, got {text!r}"
        ) from None


def _watch_status(api: Any, args: argparse.Namespace) -> int:
    """`status --watch`: the table again every S seconds, in place on a terminal."""
    import time

    from supervisor.output import tables as fmt

    tty = sys.stdout.isatty()
    while True:
        answer = api.status(args.unit)
        text = _json(answer, indent=None) if args.json else fmt.format_status(answer)
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S") + "\n" + text + "\n")
        else:
            sys.stdout.write(text + "\n\n")
        sys.stdout.flush()
        time.sleep(max(args.watch, 0.1))


if __name__ == "__main__":
    raise SystemExit(main())
