"""The agent's settings, read and checked with the standard library only.

``init`` and ``run`` each load theirs before doing anything; a missing or invalid key is a
``ConfigError`` reported as one stderr line ``agent: KEY ...`` and exit 78.

Invariants: a signature is always one the ledger accepts; when ``SIGNATURE`` is not given
it is derived from ``BASE_MODEL`` by replacing every other character run with ``-``;
paths are absolute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.ledger import SIGNATURE_RULE, InvalidSignatureError, check_signature
from services.common.prices import PriceBook
from services.common.settings import (
    ConfigError,
    date_of,
    price_book_of,
    require,
    signature_of,
)

AGENT = "agent"
MARKETS = ("us", "cn")
DEFAULT_INITIAL_CASH = 10000.0


@dataclass(frozen=True)
class InitSettings:
    signature: str
    market: str
    initial_cash: float
    start: str  # the registration date, published as TODAY_DATE
    data_dir: Path
    prices: PriceBook
    supervise_env: Path | None


@dataclass(frozen=True)
class RunSettings:
    signature: str
    trade_url: str
    price_url: str
    math_url: str
    days: int | None  # how many trading days to walk; None = all that are left
    start: str | None  # TODAY_DATE if the environment has it; the ledger says otherwise
    data_dir: Path
    prices: PriceBook


def derive_signature(base_model: str) -> str:
    """A ledger-safe signature from a model name ("openai/gpt-4.1" -> "openai-gpt-4.1").

    Raises:
        ConfigError: nothing usable is left of the name.
    """
    candidate = re.sub(r"[^A-Za-z0-9._-]+", "-", base_model).strip("-.")[:64].rstrip("-.")
    try:
        return check_signature(candidate)
    except InvalidSignatureError:
        raise ConfigError(
            AGENT, "BASE_MODEL", f"{base_model!r} leaves no usable signature ({SIGNATURE_RULE})"
        ) from None


def data_dir_from(environ: Mapping[str, str]) -> Path:
    """``DATA_DIR`` (default ``./data``) made absolute; ``init`` creates what it needs."""
    return Path(environ.get("DATA_DIR") or "data").expanduser().absolute()


def _market(environ: Mapping[str, str]) -> str:
    market = environ.get("MARKET") or "us"
    if market not in MARKETS:
        raise ConfigError(AGENT, "MARKET", f"{market!r} is not one of {', '.join(MARKETS)}")
    if market != "us" and not environ.get("PRICE_FILE"):
        raise ConfigError(
            AGENT,
            "PRICE_FILE",
            f"environment variable is not set (MARKET {market!r} has no bundled prices)",
        )
    return market


def _initial_cash(environ: Mapping[str, str]) -> float:
    raw = environ.get("INITIAL_CASH")
    if not raw:
        return DEFAULT_INITIAL_CASH
    try:
        cash = float(raw)
    except ValueError:
        cash = -1.0
    if not cash > 0 or cash == float("inf"):
        raise ConfigError(AGENT, "INITIAL_CASH", f"{raw!r} is not a positive amount")
    return cash


def load_init(environ: Mapping[str, str]) -> InitSettings:
    """Settings of ``init``: identity, market, cash, start date, where to register and publish."""
    if environ.get("SIGNATURE"):
        signature = signature_of(AGENT, environ)
    else:
        signature = derive_signature(require(AGENT, "BASE_MODEL", environ))
    market = _market(environ)
    cash = _initial_cash(environ)
    prices = price_book_of(AGENT, environ)
    start = date_of(AGENT, "START_DATE", environ) if environ.get("START_DATE") else None
    hand_off = environ.get("SUPERVISE_ENV")
    return InitSettings(
        signature=signature,
        market=market,
        initial_cash=cash,
        start=start or prices.trading_days[0],
        data_dir=data_dir_from(environ),
        prices=prices,
        supervise_env=Path(hand_off).absolute() if hand_off else None,
    )


def _url(key: str, environ: Mapping[str, str]) -> str:
    value = require(AGENT, key, environ)
    if not value.startswith(("http://", "https://")):
        raise ConfigError(AGENT, key, f"{value!r} is not an http(s) URL")
    return value


def load_run(environ: Mapping[str, str]) -> RunSettings:
    """Settings of ``run``: identity, the three servers' URLs, how far to go."""
    signature = signature_of(AGENT, environ)
    urls = {key: _url(key, environ) for key in ("TRADE_URL", "PRICE_URL", "MATH_URL")}
    raw_days = environ.get("DAYS")
    days: int | None = None
    if raw_days:
        if not raw_days.isdigit() or int(raw_days) < 1:
            raise ConfigError(AGENT, "DAYS", f"{raw_days!r} is not a positive whole number")
        days = int(raw_days)
    start = date_of(AGENT, "TODAY_DATE", environ) if environ.get("TODAY_DATE") else None
    return RunSettings(
        signature=signature,
        trade_url=urls["TRADE_URL"],
        price_url=urls["PRICE_URL"],
        math_url=urls["MATH_URL"],
        days=days,
        start=start,
        data_dir=data_dir_from(environ),
        prices=price_book_of(AGENT, environ),
    )
