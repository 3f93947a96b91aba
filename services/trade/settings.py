"""The trade server's startup settings, read and checked with the standard library only.

``SIGNATURE`` and ``TODAY_DATE`` are required (the supervisor injects them at exec time);
``DATA_DIR`` (default ``./data``) must be a writable directory; ``PRICE_FILE`` defaults to
the bundled sample. The identity is fixed for the life of the process: nothing here reads
it from a file or lets a later change reach a running server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.prices import PriceBook
from services.common.settings import (
    Listen,
    data_dir_of,
    date_of,
    listen_of,
    price_book_of,
    signature_of,
)

SERVER = "trade"


@dataclass(frozen=True)
class TradeSettings:
    listen: Listen
    signature: str
    today: str
    data_dir: Path
    prices: PriceBook


def load_trade(argv: Sequence[str], environ: Mapping[str, str]) -> TradeSettings:
    """The trade server's settings.

    Raises:
        services.common.settings.ConfigError: a key is missing or invalid.
    """
    return TradeSettings(
        signature=signature_of(SERVER, environ),
        today=date_of(SERVER, "TODAY_DATE", environ),
        data_dir=data_dir_of(SERVER, environ),
        prices=price_book_of(SERVER, environ),
        listen=listen_of(SERVER, argv, environ),
    )
