"""`supervise exec` and `supervise wait` from parsed arguments to an exit code. Errors are
one line on stderr, `supervise exec: ...` or `supervise wait: ...`, naming the file, line,
key or target at fault.

Exit codes: 0 ready / the command's own status; 1 not ready in time (a hand-off file, a
probe) or an injected key without a value; 2 bad usage or a key file the rules refuse;
126 the command cannot be executed; 127 the command is not found.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2


def command_words(words: Sequence[str]) -> list[str]:
    """What follows `--` (argparse keeps the separator in a REMAINDER)."""
    rest = list(words)
    return rest[1:] if rest[:1] == ["--"] else rest


def run_wait(args: argparse.Namespace) -> int:
    """`supervise wait`: standard library only, then (if given) exec the command."""
    from supervisor.shims.wait import BadTarget, Condition, WaitTimeout, wait_for

    if args.tcp:
        condition = Condition("tcp", args.tcp)
    elif args.http:
        condition = Condition("http", args.http)
    elif getattr(args, "mcp", None):
        condition = Condition("mcp", args.mcp)
    elif args.exec:
        condition = Condition("exec", args.exec)
    else:
        condition = Condition("file", args.file)
    if not (0 <= args.timeout < math.inf and 0 < args.interval < math.inf):
        print(
            "supervise wait: --timeout must be a number >= 0 and --interval one > 0 "
            f"(got {args.timeout:g} and {args.interval:g})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        wait_for(condition, args.timeout, args.interval)
    except BadTarget as exc:
        print(f"supervise wait: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WaitTimeout as exc:
        print(f"supervise wait: {exc}", file=sys.stderr)
        return EXIT_NOT_READY
    argv = command_words(args.argv)
    if not argv:
        return EXIT_OK
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        print(f"supervise wait: {argv[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"supervise wait: {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 126


def run_exec(args: argparse.Namespace) -> int:
    """`supervise exec`: wait, read, check, then exec (or attend) the command."""
    import re

    from supervisor.errors import SuperviseError
    from supervisor.shims.environment import (
        BadInjectName,
        HandOffTimeout,
        MissingKey,
        build_environment,
        merge_key_files,
        parse_inject,
        wait_for_files,
    )
    from supervisor.shims.execute import Attendance, exec_command, run_attended

    argv = command_words(args.argv)
    if not argv:
        print("supervise exec: no command after --", file=sys.stderr)
        return EXIT_USAGE
    try:
        inject = parse_inject(args.inject)
        pattern = re.compile(args.ready_log) if args.ready_log is not None else None
    except BadInjectName as exc:
        print(f"supervise exec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except re.error as exc:
        print(f"supervise exec: --ready-log {args.ready_log!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.wait_timeout < math.inf:
        print(
            f"supervise exec: --wait-timeout must be a number >= 0 (got {args.wait_timeout:g})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.ready_file is not None and pattern is None and not args.ready_notify:
        print("supervise exec: --ready-file needs --ready-log or --ready-notify", file=sys.stderr)
        return EXIT_USAGE
    attend = Attendance(
        publish_to=Path(args.publish_to).absolute() if args.publish_to else None,
        ready_log=pattern,
        ready_notify=args.ready_notify,
        ready_file=Path(args.ready_file) if args.ready_file else None,
    )
    waited = [Path(f) for f in args.wait_file]
    try:
        wait_for_files(
            waited,
            args.wait_timeout,
            on_wait=lambda f: print(f"supervise exec: waiting for {f}", file=sys.stderr),
        )
        keys = merge_key_files([Path(f) for f in args.env_file] + waited)
        env = build_environment(os.environ, keys, inject)
    except (HandOffTimeout, MissingKey) as exc:
        print(f"supervise exec: {exc}", file=sys.stderr)
        return EXIT_NOT_READY
    except SuperviseError as exc:
        print(f"supervise exec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not attend.needed:
        return exec_command(argv, env)
    try:
        return run_attended(argv, env, attend)
    except SuperviseError as exc:
        print(f"supervise exec: {exc}", file=sys.stderr)
        return EXIT_USAGE
