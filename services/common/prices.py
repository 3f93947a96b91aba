"""The price book: AI-Trader's ``merged.jsonl`` read once into memory (standard library only).

One JSON document per line and symbol; a day's bar keeps the file's strings under
``"1. buy price"`` (open), ``"2. high"``, ``"3. low"``, ``"4. sell price"`` (close) and
``"5. volume"``, so tool results can hand them back exactly as AI-Trader does.

Invariants: a loaded book is immutable; every bar has all five values and each parses
as a number; dates are ``YYYY-MM-DD``. A malformed file is an error naming the file, the
line and the problem — never a silently shorter book (this file is configuration).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Found next to the code, in the checkout: services/ is run from there, never installed.
DEFAULT_PRICE_FILE = Path(__file__).resolve().parents[1] / "data" / "merged.jsonl"

BAR_KEYS = {
    "open": "1. buy price",
    "high": "2. high",
    "low": "3. low",
    "close": "4. sell price",
    "volume": "5. volume",
}

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_date(value: str) -> bool:
    """True when ``value`` is a real calendar date written ``YYYY-MM-DD``."""
    # fromisoformat alone also takes "20251001" and "2025-W40-3" on 3.11+.
    if not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


class PriceFileError(Exception):
    """The price file is missing or malformed."""

    def __init__(self, path: Path, problem: str, line: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Bar:
    """One symbol's day, as the file's strings (``open`` is AI-Trader's "buy price")."""

    open: str
    high: str
    low: str
    close: str
    volume: str

    @property
    def open_price(self) -> float:
        return float(self.open)

    @property
    def close_price(self) -> float:
        return float(self.close)


@dataclass(frozen=True)
class PriceBook:
    """All bars of a price file: ``symbols`` in file order, ``trading_days`` sorted."""

    path: Path
    symbols: tuple[str, ...]
    trading_days: tuple[str, ...]
    _bars: Mapping[str, Mapping[str, Bar]]

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._bars

    def bar(self, symbol: str, date: str) -> Bar | None:
        """The bar of ``symbol`` on ``date``, or None if the file has none."""
        return self._bars.get(symbol, {}).get(date)

    def days_of(self, symbol: str) -> tuple[str, ...]:
        """The sorted dates on which ``symbol`` has a bar."""
        return tuple(sorted(self._bars.get(symbol, {})))

    def days_after(self, date: str) -> tuple[str, ...]:
        """Trading days strictly after ``date``, in order."""
        return tuple(day for day in self.trading_days if day > date)

    def day_before(self, date: str) -> str | None:
        """The last trading day strictly before ``date``, or None."""
        earlier = [day for day in self.trading_days if day < date]
        return earlier[-1] if earlier else None


def _parse_bar(path: Path, line: int, symbol: str, date: str, raw: object) -> Bar:
    if not is_date(date):
        raise PriceFileError(path, f"{symbol}: {date!r} is not a YYYY-MM-DD date", line)
    if not isinstance(raw, dict):
        raise PriceFileError(path, f"{symbol} {date}: the bar is not an object", line)
    values: dict[str, str] = {}
    for field, key in BAR_KEYS.items():
        value = raw.get(key)
        if not isinstance(value, str):
            raise PriceFileError(path, f"{symbol} {date}: {key!r} missing or not a string", line)
        try:
            float(value)
        except ValueError:
            raise PriceFileError(
                path, f"{symbol} {date}: {key!r} = {value!r} is not a number", line
            ) from None
        values[field] = value
    return Bar(**values)


def load_price_book(path: Path) -> PriceBook:
    """Read and check a whole ``merged.jsonl``.

    Args:
        path: the price file.

    Returns:
        The immutable book.

    Raises:
        PriceFileError: the file cannot be read, or a line is not a well-formed document.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(path, f"cannot be read: {exc}") from exc
    bars: dict[str, dict[str, Bar]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PriceFileError(path, f"not JSON: {exc.msg}", number) from exc
        if not isinstance(document, dict):
            raise PriceFileError(path, "not a JSON object", number)
        meta = document.get("Meta Data")
        symbol = meta.get("2. Symbol") if isinstance(meta, dict) else None
        if not isinstance(symbol, str) or not symbol:
            raise PriceFileError(path, "no 'Meta Data' / '2. Symbol'", number)
        series = document.get("Time Series (Daily)")
        if not isinstance(series, dict):
            raise PriceFileError(path, f"{symbol}: no 'Time Series (Daily)' object", number)
        if symbol in bars:
            raise PriceFileError(path, f"{symbol} appears twice", number)
        bars[symbol] = {
            date: _parse_bar(path, number, symbol, date, raw) for date, raw in series.items()
        }
    if not bars:
        raise PriceFileError(path, "holds no symbols")
    days = sorted({date for series in bars.values() for date in series})
    return PriceBook(path=path, symbols=tuple(bars), trading_days=tuple(days), _bars=bars)
