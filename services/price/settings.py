"""The price server's startup settings, read and checked with the standard library only.

``TODAY_DATE`` is required (it is what "no look-ahead" is measured against);
``SIGNATURE`` is optional and only shown by ``/healthz``; ``PRICE_FILE`` defaults to the
bundled sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.prices import PriceBook
from services.common.settings import (
    Listen,
    date_of,
    listen_of,
    optional_signature_of,
    price_book_of,
)

SERVER = "price"


@dataclass(frozen=True)
class PriceSettings:
    listen: Listen
    signature: str | None
    today: str
    prices: PriceBook


def load_price(argv: Sequence[str], environ: Mapping[str, str]) -> PriceSettings:
    """The price server's settings.

    Raises:
        services.common.settings.ConfigError: a key is missing or invalid.
    """
    return PriceSettings(
        signature=optional_signature_of(SERVER, environ),
        today=date_of(SERVER, "TODAY_DATE", environ),
        prices=price_book_of(SERVER, environ),
        listen=listen_of(SERVER, argv, environ),
    )
