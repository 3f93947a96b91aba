"""`${...}` interpolation: pure parsing and substitution.

Syntax: `${NAME}`, `${NAME:-default}` (a default of plain text: no `${` in it) and `$$`
(a literal `$`). A lone `$` not followed by
`{` or `$` is kept as written (shell commands use it). Whoever calls `interpolate` decides
what a name means; a name the resolver does not know is an error, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

_REFERENCE = re.compile(r"\$(?:\$|\{([^}]*)\})")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_.-]+)?")


class TemplateSyntaxError(ValueError):
    """A `${` without its `}` or an empty or malformed name."""

    def __init__(self, template: str, detail: str) -> None:
        self.template, self.detail = template, detail
        super().__init__(f"{detail} in {template!r}")


def references(template: str) -> Iterator[tuple[str, str | None]]:
    """Yield `(name, default)` for every `${...}` in `template`.

    Raises:
        TemplateSyntaxError: an unterminated `${` or a malformed name.
    """
    position = 0
    for match in _REFERENCE.finditer(template):
        _check_gap(template, template[position : match.start()])
        position = match.end()
        body = match.group(1)
        if body is None:  # `$$`
            continue
        name, sep, default = body.partition(":-")
        if not _NAME.fullmatch(name):
            raise TemplateSyntaxError(template, f"malformed reference ${{{body}}}")
        if sep and "${" in default:  # `${A:-${B}}` would render "x}" or the text "${B}"
            raise TemplateSyntaxError(
                template,
                f"a reference in the default of ${{{name}:-…}} (nested defaults are not "
                "supported; the default must be plain text)",
            )
        yield name, (default if sep else None)
    _check_gap(template, template[position:])


def _check_gap(template: str, gap: str) -> None:
    # The regex skips a `${` that never closes; it must not pass silently as text.
    if "${" in gap:
        raise TemplateSyntaxError(template, "unterminated '${'")


def interpolate(template: str, resolve: Callable[[str], str | None]) -> str:
    """Substitute every reference in `template`.

    Args:
        template: the text to render.
        resolve: maps a name to its value, or None when the name has no value; it may
            raise to say the name is an error or must be waited for (a LookupError it
            raises gives way to the reference's default, if it has one).

    Returns:
        The rendered text.

    Raises:
        TemplateSyntaxError: the template is malformed.
        KeyError: a name has no value and no default (the key is the name).
    """
    list(references(template))  # syntax first, so a bad template fails the same way always

    def substitute(match: re.Match[str]) -> str:
        body = match.group(1)
        if body is None:
            return "$"
        name, sep, default = body.partition(":-")
        try:
            value = resolve(name)
        except LookupError:
            if sep:  # a default makes a missing value fine
                return default
            raise
        if value is not None and (value != "" or not sep):
            return value
        if sep:
            return default
        raise KeyError(name)

    return _REFERENCE.sub(substitute, template)


def stand_in(template: str, value: str = "1") -> str:
    """`template` with every reference replaced by `value` (and `$$` by `$`): what it
    looks like rendered, for checking its shape before any value is known."""
    return _REFERENCE.sub(lambda m: "$" if m.group(1) is None else value, template)
