"""The math server's startup settings, read and checked with the standard library only.

It needs no model key: ``SIGNATURE`` is optional and only shown by ``/healthz``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.settings import Listen, listen_of, optional_signature_of

SERVER = "math"


@dataclass(frozen=True)
class MathSettings:
    listen: Listen
    signature: str | None


def load_math(argv: Sequence[str], environ: Mapping[str, str]) -> MathSettings:
    """The math server's settings.

    Raises:
        services.common.settings.ConfigError: a key is invalid.
    """
    return MathSettings(
        signature=optional_signature_of(SERVER, environ),
        listen=listen_of(SERVER, argv, environ),
    )
