"""The one secrets rule: which names are secret, how a value is redacted, and how known
secret values are masked wherever they appear in text. Pure.

A `Redactor` holds the secret values currently known (from env files, `[env]` and every
model's keys); the key store owns it and hands it to the printer and the control API, so
that neither has to ask the other.
"""

from __future__ import annotations

from collections.abc import Iterable

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
REDACTED = "***"
REDACTED_BYTES = REDACTED.encode()
MIN_MASKED_LENGTH = 4  # shorter secret values would mask ordinary words


def is_secret(name: str) -> bool:
    """Whether a variable's name says its value must never be shown."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def redact(name: str, value: str) -> str:
    return REDACTED if is_secret(name) else value


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of a secret value replaced by `***`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _secret_values(pairs: Iterable[tuple[str, str]]) -> frozenset[str]:
    return frozenset(v for k, v in pairs if is_secret(k) and len(v) >= MIN_MASKED_LENGTH)


class Redactor:
    """The secret values known right now; longest first, so a value that contains
    another is masked whole.

    Two sources: the configuration's variables and model keys (`update`, replaced as a
    whole), and what each unit's environment was rendered with (`rendered`: a process's
    own `env` table, or a secret-named variable given a value from elsewhere)."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()
        self.encoded: tuple[bytes, ...] = ()  # the values as UTF-8, for raw output
        self.longest = 0  # bytes in the longest value encoded
        self._known: frozenset[str] = frozenset()
        self._rendered: dict[str, frozenset[str]] = {}

    def update(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Replace the known values with those of the secret-looking names in `pairs`."""
        self._known = _secret_values(pairs)
        self._rebuild()

    def rendered(self, unit: str, pairs: Iterable[tuple[str, str]]) -> None:
        """The secret-looking values `unit`'s environment has, besides the known ones."""
        extra = _secret_values(pairs) - self._known
        if self._rendered.get(unit, frozenset()) != extra:
            self._rendered[unit] = extra
            self._rebuild()

    def _rebuild(self) -> None:
        found = self._known.union(*self._rendered.values())
        self.values = tuple(sorted(found, key=len, reverse=True))
        self.encoded = tuple(v.encode() for v in self.values)
        self.longest = max((len(e) for e in self.encoded), default=0)

    def mask(self, text: str) -> str:
        return mask(text, self.values)

    def mask_bytes(self, data: bytes) -> bytes:
        """Raw output with every secret value replaced by `***`."""
        for secret in self.encoded:
            if secret in data:
                data = data.replace(secret, REDACTED_BYTES)
        return data
