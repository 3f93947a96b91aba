"""Startup settings of the incident's legacy trade server (standard library only).

``RUNTIME_ENV_PATH`` is required; ``SIGNATURE`` must NOT be in the environment (the
identity comes from the file, at each call; a server given it at exec time is the
reference one, ``python -m services.trade``). ``TODAY_DATE`` is optional: without it the
day comes from the file too. ``DATA_DIR``, ``PRICE_FILE`` and the port are checked as
the reference server checks them. A problem is one stderr line and exit 78.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.prices import PriceBook
from services.common.settings import (
    ConfigError,
    Listen,
    data_dir_of,
    date_of,
    listen_of,
    price_book_of,
    require,
)

SERVER = "legacy_trade"
# AI-Trader's runtime-env file: a JSON object the agent writes, the tools read.
RUNTIME_ENV_PATH = "RUNTIME_ENV_PATH"


@dataclass(frozen=True)
class LegacyTradeSettings:
    """Everything but the identity, which is read from ``runtime_env`` at each call.

    ``today`` is None when the environment does not give ``TODAY_DATE``: the file's is
    used then.
    """

    listen: Listen
    runtime_env: Path
    today: str | None
    data_dir: Path
    prices: PriceBook


def load_legacy_trade(argv: Sequence[str], environ: Mapping[str, str]) -> LegacyTradeSettings:
    """The legacy server's settings; everything but the identity is checked now.

    Raises:
        services.common.settings.ConfigError: ``RUNTIME_ENV_PATH`` is missing,
            ``SIGNATURE`` is set, or another key is invalid.
    """
    if environ.get("SIGNATURE"):
        raise ConfigError(
            SERVER,
            "SIGNATURE",
            f"is set, but this reproduction reads it from {RUNTIME_ENV_PATH} at each call; "
            "serve it normally with python -m services.trade",
        )
    runtime_env = Path(require(SERVER, RUNTIME_ENV_PATH, environ)).expanduser().absolute()
    return LegacyTradeSettings(
        runtime_env=runtime_env,
        today=date_of(SERVER, "TODAY_DATE", environ) if environ.get("TODAY_DATE") else None,
        data_dir=data_dir_of(SERVER, environ),
        prices=price_book_of(SERVER, environ),
        listen=listen_of(SERVER, argv, environ),
    )
