"""TradeTools: ``buy`` and ``sell`` at the day's open, recorded in the signature's ledger.

Result shapes are AI-Trader's (``agent_tools/tool_trade.py``): on success the new
positions ``{SYM: qty, ..., "CASH": float}``; a business rejection (unknown symbol, no
price that day, amount <= 0, insufficient cash, no position, insufficient shares) is a
plain result ``{"error": "...", ..., "symbol", "date"}`` the model can read and act on.

Invariants: every fill is at ``TODAY_DATE``'s open from the price book; the check and the
append happen in one ledger critical section, so concurrent trades on one signature never
lose an update; an environment problem (no ledger for this SIGNATURE, an unreadable
ledger) raises ``ToolError`` naming the server and the key — never a fake rejection, and
never the SDK's bare "Error executing tool".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from services.common.ledger import (
    Action,
    EmptyLedgerError,
    Ledger,
    LedgerError,
    NotRegisteredError,
    Positions,
    Proposal,
    Row,
    cash_of,
)
from services.trade.settings import SERVER, TradeSettings

NAME = "TradeTools"
# Cash is kept to 1/100 of a cent so repeated float arithmetic never shows as 0.30000000000000004.
CASH_DECIMALS = 4

Result = dict[str, Any]


class Trader:
    """The tools' logic, bound to one signature, one day and one price book."""

    def __init__(self, settings: TradeSettings) -> None:
        self.settings = settings
        self.ledger = Ledger(settings.data_dir, settings.signature)

    def __repr__(self) -> str:
        return f"<Trader {self.settings.signature} on {self.settings.today}, {self.ledger!r}>"

    def _rejection(self, message: str, symbol: str, **details: Any) -> Result:
        return {"error": message, **details, "symbol": symbol, "date": self.settings.today}

    def _open_price(self, symbol: str, amount: int) -> float | Result:
        """The fill price, or the rejection that prevents any fill."""
        if amount <= 0:
            return self._rejection(
                "Amount must be a positive integer! This action will not be allowed.",
                symbol,
                amount=amount,
            )
        book = self.settings.prices
        if not book.has_symbol(symbol):
            return self._rejection(
                f"Symbol {symbol} not found! This action will not be allowed.", symbol
            )
        bar = book.bar(symbol, self.settings.today)
        if bar is None:
            return self._rejection(
                f"No price for {symbol} on {self.settings.today}! This action will not be allowed.",
                symbol,
            )
        return bar.open_price

    def _transact(self, decide: Callable[[Row], Proposal | Result]) -> Row | Result:
        try:
            outcome: Row | Result = self.ledger.transact(self.settings.today, decide)
        except NotRegisteredError as exc:
            raise ToolError(
                f"{SERVER}: no ledger for SIGNATURE {exc.signature!r} at {exc.path} "
                f"(DATA_DIR {str(self.settings.data_dir)!r}); run the agent's init for this "
                "signature with the same DATA_DIR"
            ) from exc
        except EmptyLedgerError as exc:
            raise ToolError(f"{SERVER}: SIGNATURE {self.settings.signature!r}: {exc}") from exc
        except LedgerError as exc:
            raise ToolError(f"{SERVER}: DATA_DIR {str(self.settings.data_dir)!r}: {exc}") from exc
        return outcome

    def buy(self, symbol: str, amount: int) -> Result:
        price = self._open_price(symbol, amount)
        if isinstance(price, dict):
            return price

        def decide(latest: Row) -> Proposal | Result:
            cash = cash_of(latest.positions)
            cost = price * amount
            if cash - cost < 0:
                return self._rejection(
                    "Insufficient cash! This action will not be allowed.",
                    symbol,
                    required_cash=round(cost, CASH_DECIMALS),
                    cash_available=cash,
                )
            positions: Positions = dict(latest.positions)
            positions[symbol] = positions.get(symbol, 0) + amount
            positions["CASH"] = round(cash - cost, CASH_DECIMALS)
            return Proposal(Action("buy", symbol, amount), positions)

        outcome = self._transact(decide)
        return dict(outcome.positions) if isinstance(outcome, Row) else outcome

    def sell(self, symbol: str, amount: int) -> Result:
        price = self._open_price(symbol, amount)
        if isinstance(price, dict):
            return price

        def decide(latest: Row) -> Proposal | Result:
            have = latest.positions.get(symbol, 0)
            if not have:
                return self._rejection(
                    f"No position for {symbol}! This action will not be allowed.", symbol
                )
            if have < amount:
                return self._rejection(
                    "Insufficient shares! This action will not be allowed.",
                    symbol,
                    have=have,
                    want_to_sell=amount,
                )
            positions: Positions = dict(latest.positions)
            positions[symbol] = have - amount
            positions["CASH"] = round(cash_of(latest.positions) + price * amount, CASH_DECIMALS)
            return Proposal(Action("sell", symbol, amount), positions)

        outcome = self._transact(decide)
        return dict(outcome.positions) if isinstance(outcome, Row) else outcome


def create_server(settings: TradeSettings) -> MCPServer:
    """The "TradeTools" MCP server for one signature and one trading day."""
    trader = Trader(settings)
    return build_server(
        lambda: trader,
        f"Buy and sell stocks at the open of {settings.today} for {settings.signature}; "
        "results are the new positions, or {'error': ...} when the trade is refused.",
    )


def build_server(trader_for: Callable[[], Trader], instructions: str) -> MCPServer:
    """The "TradeTools" tools, each asking ``trader_for`` for its ``Trader`` when called.

    ``trader_for`` may raise ``ToolError`` (the incident's legacy trade server in
    ``scripts/incident`` does, when it cannot tell who is trading); the call then fails
    with that text.
    """
    mcp: MCPServer = MCPServer(NAME, instructions=instructions)

    @mcp.tool()
    def buy(symbol: str, amount: int) -> dict[str, Any]:
        """Buy `amount` shares of `symbol` at today's opening price.

        Args:
            symbol: Stock symbol, such as "AAPL" or "MSFT".
            amount: How many shares to buy; a positive integer.

        Returns:
            The new positions ({"AAPL": 110, ..., "CASH": 5000.0}) on success, or
            {"error": message, ...} when the trade is not allowed (e.g. insufficient cash).
        """
        return trader_for().buy(symbol, amount)

    @mcp.tool()
    def sell(symbol: str, amount: int) -> dict[str, Any]:
        """Sell `amount` shares of `symbol` at today's opening price.

        Args:
            symbol: Stock symbol, such as "AAPL" or "MSFT".
            amount: How many shares to sell; a positive integer.

        Returns:
            The new positions on success, or {"error": message, ...} when the trade is
            not allowed (no position, insufficient shares, ...).
        """
        return trader_for().sell(symbol, amount)

    return mcp
