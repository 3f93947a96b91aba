"""JSON for the control socket's client, from the C accelerator `_json` directly.

`import json` costs a client command ~10 ms here, nearly all of it `re` (and `enum`,
which `re` imports) for the pure-Python fallback paths a CPython client never takes.
The scanner and encoder below are the ones `json.loads`/`json.dumps` use on CPython,
built the way `json` builds them with its defaults. Without `_json` (another Python
implementation), or to report a malformed document, `json` itself is used.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What `_json.make_scanner` reads off a `json.JSONDecoder`: its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _no_default(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_scan: Any = None
_encode: Any = None
try:
    import _json

    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # reads only these
    _encode = _json.make_encoder(
        None, _no_default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
except (ImportError, AttributeError, TypeError):  # pragma: no cover - not CPython
    pass


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`: the same values, and the same error for a malformed document."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if _scan is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except StopIteration:
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return value
    import json  # a malformed document: json's own error, with its position

    return json.loads(text)


def dumps(value: Any) -> str:
    """`json.dumps(value)` with its defaults (ASCII, `", "` and `": "` separators)."""
    if _encode is None:  # pragma: no cover - not CPython
        import json

        return json.dumps(value)
    return "".join(_encode(value, 0))
