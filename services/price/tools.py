"""LocalPrices: ``get_price_local(symbol, date)`` from the price book, as of ``TODAY_DATE``.

Results are AI-Trader's (``agent_tools/tool_get_price_local.py``, daily data):
``{"symbol", "date", "ohlcv": {"open", "high", "low", "close", "volume"}}`` with the
file's string values; for ``TODAY_DATE`` the fields the day has not revealed yet carry
AI-Trader's explanatory strings (``HIDDEN_TODAY``) in place of a value; problems a model
can act on are ``{"error": ..., "symbol", "date"}`` results with AI-Trader's wording.

Where it deliberately differs from AI-Trader: a date after ``TODAY_DATE`` is refused
(AI-Trader serves it, look-ahead included), and the sample dates an error lists stop at
``TODAY_DATE`` (AI-Trader lists the newest five in the file). There is no hourly mode.

Invariant — no look-ahead: for ``date == TODAY_DATE`` only ``open`` is a price; a date
after ``TODAY_DATE`` is refused, and an error's list of sample dates never shows one.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

from services.common.prices import is_date
from services.price.settings import PriceSettings

NAME = "LocalPrices"
SAMPLE_DATES = 5
# What AI-Trader returns for today's fields that are not known at the open, word for word.
HIDDEN_TODAY = {
    "high": "You can not get the current high price",
    "low": "You can not get the current low price",
    "close": "You can not get the next close price",
    "volume": "You can not get the current volume",
}

Result = dict[str, Any]


def price_local(settings: PriceSettings, symbol: str, date: str) -> Result:
    """The tool's logic: one bar as of ``settings.today``, or an error result."""
    today = settings.today
    if not is_date(date):
        return {"error": "date must be in YYYY-MM-DD format", "symbol": symbol, "date": date}
    if date > today:
        return {
            "error": f"Date {date} is after today ({today}); future prices are not available.",
            "symbol": symbol,
            "date": date,
        }
    book = settings.prices
    if not book.has_symbol(symbol):
        return {
            "error": f"No records found for stock {symbol} in local data",
            "symbol": symbol,
            "date": date,
        }
    bar = book.bar(symbol, date)
    if bar is None:
        known = [day for day in book.days_of(symbol) if day <= today]
        return {
            "error": (
                f"Data not found for date {date}. Please verify the date exists in data. "
                f"Sample available dates: {known[::-1][:SAMPLE_DATES]}"
            ),
            "symbol": symbol,
            "date": date,
        }
    if date == today:
        ohlcv = {"open": bar.open, **HIDDEN_TODAY}
    else:
        ohlcv = {
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
        }
    return {"symbol": symbol, "date": date, "ohlcv": ohlcv}


def create_server(settings: PriceSettings) -> MCPServer:
    """The "LocalPrices" MCP server for one trading day."""
    mcp: MCPServer = MCPServer(
        NAME,
        instructions=(f"Daily prices up to {settings.today}; for today only the open is known."),
    )

    @mcp.tool()
    def get_price_local(symbol: str, date: str) -> dict[str, Any]:
        """Read OHLCV data for a stock on a date, as known today.

        Args:
            symbol: Stock symbol, e.g. "AAPL".
            date: Date in "YYYY-MM-DD" format; not after today. For today only the
                opening price is known; high, low, close and volume say so in words.

        Returns:
            {"symbol", "date", "ohlcv": {"open", "high", "low", "close", "volume"}}, or
            {"error": message, "symbol", "date"}.
        """
        return price_local(settings, symbol, date)

    return mcp
