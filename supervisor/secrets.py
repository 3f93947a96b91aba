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


class Redactor:
    """The secret values known right now; longest first, so a value that contains
    another is masked whole."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()

    def update(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Replace the known values with those of the secret-looking names in `pairs`."""
        found = {v for k, v in pairs if is_secret(k) and len(v) >= MIN_MASKED_LENGTH}
        self.values = tuple(sorted(found, key=len, reverse=True))

    def mask(self, text: str) -> str:
        return mask(text, self.values)
