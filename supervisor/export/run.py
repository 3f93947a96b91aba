"""`supervise export TARGET` from parsed arguments: load, export, write, report.

Exit codes: 0 written (the report says what a target cannot keep); 2 the stack has errors
or cannot be exported as it is (an unknown model, a published key in a template, a secret
that would be written, an existing key file that cannot be read), or an option the target
cannot take (`-o` or `--report` where no file can be written, a `--prefix` or
`--namespace` the target refuses), each naming the file, key, option and value, and
with nothing written. Exporting again over an earlier export keeps what the user filled in
(`supervisor.export.keep`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.export.common import ExportError, ExportPlan, OutputFile
from supervisor.export.keep import merge_existing
from supervisor.export.leaks import check_no_secrets
from supervisor.export.report import Report

if TYPE_CHECKING:
    from supervisor.config.load import LoadedStack

EXIT_OK = 0
EXIT_CONFIG = 2
# What each target takes as --prefix: systemd unit names (no '@', the instance
# separator), Compose project names; Kubernetes makes any prefix a DNS label.
PREFIX_RULES = {
    "systemd": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), "letters, digits, '_', '.' and '-'"),
    "compose": (re.compile(r"[a-z0-9][a-z0-9_-]*"), "lowercase letters, digits, '_' and '-'"),
}


class BadOption(ExportError):
    """An option the export cannot use (nothing is written)."""

    def __init__(self, option: str, value: object, why: str) -> None:
        self.option, self.value, self.why = option, value, why
        super().__init__(f"{option} {str(value)!r}: {why}")


def run_export(args: argparse.Namespace) -> int:
    from supervisor.config.load import load_stack
    from supervisor.errors import ConfigError, SuperviseError

    try:
        check_options(args)
        loaded = load_stack(getattr(args, "config", None), os.environ)
        files, report, plan = _export(args, loaded)
        check_no_secrets({name: f.text for name, f in files.items()}, plan)
        files, carried = merge_existing(args.output, files)
    except ConfigError as exc:
        print(f"supervise: {len(exc.problems)} error(s) in the stack:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except SuperviseError as exc:
        print(f"supervise export: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        write_files(args.output, files)
        if args.report is not None:
            args.report.write_text(report.to_json(sorted(files)))
    except OSError as exc:
        print(f"supervise export: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {len(files)} file(s) to {args.output}", file=sys.stderr)
    for line in [*report.lines(), *carried.lines()]:
        print(line, file=sys.stderr)
    return EXIT_OK


def check_options(args: argparse.Namespace) -> None:
    """Refuse, before anything is read or written, options the export cannot use.

    Raises:
        BadOption: naming the option, its value and why.
    """
    _check_directory("-o", args.output)
    if args.report is not None:
        if args.report.is_dir():
            raise BadOption("--report", args.report, "is a directory")
        parent = args.report.parent
        if not parent.is_dir():
            raise BadOption("--report", args.report, f"{parent} is not a directory")
    rule = PREFIX_RULES.get(args.target)
    if rule is not None and not rule[0].fullmatch(args.prefix):
        raise BadOption("--prefix", args.prefix, f"a {args.target} name takes {rule[1]} only")
    namespace = getattr(args, "namespace", None)
    if namespace is not None:
        from supervisor.export.names import is_dns_label

        if not is_dns_label(namespace):
            raise BadOption(
                "--namespace",
                namespace,
                "not an RFC 1123 label (lowercase letters, digits and '-', at most 63)",
            )


def _check_directory(option: str, directory: Path) -> None:
    """`directory` is one, or can be made: its nearest existing ancestor is a directory."""
    if directory.exists() and not directory.is_dir():
        raise BadOption(option, directory, "exists and is not a directory")
    for ancestor in directory.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise BadOption(option, directory, f"{ancestor} is not a directory")
            return


def _export(
    args: argparse.Namespace, loaded: LoadedStack
) -> tuple[dict[str, OutputFile], Report, ExportPlan]:
    models = tuple(args.model)
    if args.target == "kubernetes":
        from supervisor.export.kubernetes import KubernetesOptions, export_kubernetes

        return export_kubernetes(
            loaded,
            KubernetesOptions(
                prefix=args.prefix,
                image=args.image,
                namespace=args.namespace,
                mode=args.mode,
                workdir=args.workdir or "/app",
                models=models,
            ),
        )
    if args.target == "systemd":
        from supervisor.export.systemd import SystemdOptions, export_systemd

        return export_systemd(
            loaded,
            SystemdOptions(
                prefix=args.prefix,
                systemd_version=args.systemd_version,
                supervise=args.supervise,
                workdir=args.workdir,
                models=models,
            ),
        )
    from supervisor.export.compose import ComposeOptions, export_compose

    return export_compose(
        loaded,
        ComposeOptions(
            prefix=args.prefix, image=args.image, workdir=args.workdir or "/app", models=models
        ),
    )


def write_files(directory: Path, files: Mapping[str, OutputFile]) -> None:
    """Write every file under `directory`; key files 0600, the rest 0644."""
    for name, output in sorted(files.items()):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600 if output.private else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, output.text.encode())
        finally:
            os.close(fd)
