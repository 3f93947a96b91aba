"""A tiny deterministic YAML emitter for the plain data the exporters build (dicts, lists,
strings, ints, bools). Pure.

Invariants: key order is insertion order, so equal input gives byte-equal output; a
string is written plain only when it cannot be read back as anything but that string
(no YAML 1.1 booleans, nulls, numbers or special characters), otherwise double-quoted
with JSON escapes, which are valid YAML; empty collections are `{}` and `[]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@-]*$")
# Words YAML 1.1 readers (PyYAML, older tools) take as booleans or null.
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def scalar(value: object) -> str:
    """One scalar as YAML text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        lines: list[str] = []
        for key, item in value.items():
            head = f"{pad}{scalar(key)}:"
            if _is_block(item):
                lines.append(head)
                lines.extend(_lines(item, indent + 2 if isinstance(item, Mapping) else indent))
            else:
                lines.append(f"{head} {_inline(item)}")
        return lines
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            if _is_block(item):
                inner = _lines(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return lines
    return [pad + scalar(value)]


def _is_block(value: object) -> bool:
    if isinstance(value, Mapping):
        return bool(value)
    return isinstance(value, Sequence) and not isinstance(value, str) and bool(value)


def _inline(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[]"
    return scalar(value)


def dump(value: object) -> str:
    """One YAML document (no `---`), ending in a newline."""
    return "\n".join(_lines(value, 0)) + "\n"


def dump_all(documents: Iterable[object], header: str = "") -> str:
    """Several documents separated by `---`, after an optional comment header."""
    parts = [dump(doc) for doc in documents]
    body = "---\n".join(parts)
    return header + body
