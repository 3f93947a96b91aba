"""The reference agent's trading rule: yesterday's candle decides today's orders (pure).

- SELL a whole holding when yesterday closed at least ``SELL_MOVE`` below its open.
- BUY a symbol not held when yesterday closed at least ``BUY_MOVE`` above its open,
  strongest first, spending ``POSITION_BUDGET`` of the cash left at today's open.

Invariants: deterministic (same positions and quotes, same orders, same order); sells
come before buys, so buys can spend the proceeds; a buy never plans to spend more cash
than the sells and the holdings leave. Only values in, values out — no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BUY_MOVE = 0.004
SELL_MOVE = 0.004
POSITION_BUDGET = 0.25


@dataclass(frozen=True)
class Quote:
    """What the agent may know of a symbol at today's open."""

    symbol: str
    prev_open: float
    prev_close: float
    open: float

    @property
    def prev_move(self) -> float:
        """Yesterday's close relative to yesterday's open (0.01 = up 1 %)."""
        return self.prev_close / self.prev_open - 1.0


@dataclass(frozen=True)
class Order:
    action: str  # "buy" | "sell"
    symbol: str
    amount: int
    reason: str


def decide(positions: Mapping[str, int | float], quotes: Sequence[Quote]) -> list[Order]:
    """Today's orders from the positions at the open and the quotes.

    Args:
        positions: ``{SYM: qty, ..., "CASH": cash}`` as the ledger holds them.
        quotes: one per symbol that has both yesterday's bar and today's open.

    Returns:
        Sells, then buys; empty for a day without a signal.
    """
    cash = float(positions.get("CASH", 0.0))
    orders: list[Order] = []
    for quote in quotes:
        held = int(positions.get(quote.symbol, 0))
        if held > 0 and quote.prev_move <= -SELL_MOVE:
            orders.append(
                Order("sell", quote.symbol, held, f"closed {quote.prev_move:+.2%} yesterday")
            )
            cash += held * quote.open
    candidates = [
        quote for quote in quotes if not positions.get(quote.symbol) and quote.prev_move >= BUY_MOVE
    ]
    for quote in sorted(candidates, key=lambda q: (-q.prev_move, q.symbol)):
        amount = math.floor(cash * POSITION_BUDGET / quote.open)
        if amount < 1:
            continue
        orders.append(
            Order("buy", quote.symbol, amount, f"closed {quote.prev_move:+.2%} yesterday")
        )
        cash -= amount * quote.open
    return orders
