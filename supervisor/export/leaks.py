"""What an export could leak, and the check that refuses it: the values of every secret
the stack names or reaches, and `check_no_secrets`, which fails an export whose generated
text contains one anywhere. Pure.

Invariants: every template that can reach a generated file is searched for references
(`[env]`, `[supervise] http`, and each process's command, env, cwd and ready and live
probe targets), so a secret from the exporter's environment is caught wherever it is
interpolated; only values at least `MIN_MASKED_LENGTH` long are searched for (shorter ones
would match ordinary words, and are not masked at run time either); a value known under
several names is reported under one; longer values are searched first, so text holding a
secret that contains a shorter one is reported under the longer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from supervisor.config.interpolate import references
from supervisor.config.load import LoadedStack
from supervisor.config.spec import Liveness, Probe, Stack
from supervisor.export.common import ExportError, ExportPlan
from supervisor.secrets import MIN_MASKED_LENGTH, is_secret


class SecretInOutput(ExportError):
    """A generated file would contain a secret's value (never written)."""

    def __init__(self, output: str, name: str) -> None:
        self.output, self.name = output, name
        super().__init__(
            f"{output} would contain the value of the secret {name}; reference it from a "
            "secret-looking env entry or an injected key instead of interpolating it"
        )


def secret_values(
    loaded: LoadedStack, rendered: list[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Every secret the export could leak, as (name, value): env-file and referenced
    environment variables with secret names, rendered secret entries, secret model keys."""
    referenced: set[str] = set()
    stack = loaded.stack
    for template in templates(stack):
        referenced.update(name for name, _ in references(template))
    pairs = [(k, v) for k, v in loaded.env_files.items() if is_secret(k)]
    pairs += [(k, v) for k, v in loaded.environ.items() if k in referenced and is_secret(k)]
    pairs += rendered
    for keys in stack.models.values():
        pairs += [(k, v) for k, v in keys.items() if is_secret(k)]
    found = {v: k for k, v in pairs if len(v) >= MIN_MASKED_LENGTH}
    return tuple(sorted(((k, v) for v, k in found.items()), key=lambda p: (-len(p[1]), p)))


def templates(stack: Stack) -> Iterator[str]:
    """Every interpolated string of the stack whose rendering an export may write."""
    yield from stack.env.values()
    if stack.supervise.http is not None:
        yield stack.supervise.http
    for spec in stack.processes.values():
        yield from [spec.command] if isinstance(spec.command, str) else spec.command
        yield from spec.env.values()
        if spec.cwd is not None:
            yield spec.cwd
        yield from _probe_templates(spec.ready)
        yield from _probe_templates(spec.live)


def _probe_templates(probe: Probe | Liveness | None) -> Iterator[str]:
    """A probe's interpolated targets (a log pattern is never interpolated)."""
    if probe is None or probe.kind in ("log", "notify"):
        return
    target = getattr(probe, probe.kind)
    yield from [target] if isinstance(target, str) else target


def check_no_secrets(outputs: Mapping[str, str], plan: ExportPlan) -> None:
    """Raises SecretInOutput if any generated text contains a known secret value."""
    for output, text in outputs.items():
        for name, value in plan.secret_values:
            if value in text:
                raise SecretInOutput(output, name)
