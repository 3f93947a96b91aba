"""``agent run``: trade day by day through the model's own MCP servers.

Each trading day after the current ``TODAY_DATE``: move the model to that day (by
default through the supervisor's client, which restarts exactly the model's
date-dependent servers and returns once they are ready), read yesterday's bars and
today's opens from the price server, decide with ``rule.decide``, and send the orders to
the trade server, printing one line per decision. A summary line ends the run. A ledger
that already reached the price file's last day (runs continue their ledger) is said so,
with how to start over, and the run ends with zero days.

Invariants: the ledger (read at each day's open) is the truth about positions; a
business rejection (``{"error": ...}``) is a decision outcome, printed as REJECTED; a
tool failure (``isError``, an unreachable server, a failed date change) is printed as
ERROR and counted — never turned into a silent HOLD; the exit status is 0 only when the
count is zero.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx2

from services.agent.reset import HOW_TO_RESET
from services.agent.rule import Order, Quote, decide
from services.agent.settings import AGENT, RunSettings
from services.agent.toolbox import CONNECT_RETRY_SECONDS, Toolbox, ToolFailure
from services.common.ledger import Ledger, LedgerError, Positions, cash_of

DateSetter = Callable[[str], Awaitable[None]]


class DateChangeError(Exception):
    """The model could not be moved to the next trading day."""

    def __init__(self, day: str, reason: str) -> None:
        self.day = day
        self.reason = reason
        super().__init__(f"cannot set TODAY_DATE={day}: {reason}")


def supervisor_date_setter(model: str) -> DateSetter:
    """Move ``model``'s ``TODAY_DATE`` through the supervisor found at ``$SUPERVISE_SOCKET``."""
    from supervisor.client import AsyncClient, ClientError

    client = AsyncClient()

    async def set_date(day: str) -> None:
        try:
            answer = await client.set(model, {"TODAY_DATE": day})
        except ClientError as exc:
            raise DateChangeError(day, f"supervisor refused: {exc}") from exc
        failed = answer.get("failed") or {}
        if failed:
            raise DateChangeError(day, f"units failed to restart: {failed}")

    return set_date


@dataclass
class Tally:
    """What a run did; ``tool_errors`` decides the exit status."""

    days: int = 0
    trades: int = 0
    rejected: int = 0
    tool_errors: int = 0
    positions: Positions = field(default_factory=dict)
    value: float | None = None
    valued_on: str | None = None

    def summary(self) -> str:
        held = {sym: qty for sym, qty in self.positions.items() if sym == "CASH" or qty}
        value = (
            f"{self.value:.2f} at the close of {self.valued_on}"
            if self.value is not None
            else "unknown"
        )
        return (
            f"SUMMARY days={self.days} trades={self.trades} rejected={self.rejected} "
            f"tool_errors={self.tool_errors} positions={json.dumps(held)} value={value}"
        )


class _Day:
    """One trading day's work, printing as it goes."""

    def __init__(self, tools: Toolbox, tally: Tally, out: TextIO, day: str) -> None:
        self.tools, self.tally, self.out, self.day = tools, tally, out, day

    def say(self, text: str) -> None:
        print(f"{self.day} {text}", file=self.out, flush=True)

    def error(self, text: str) -> None:
        self.tally.tool_errors += 1
        self.say(f"ERROR {text}")

    async def _bar(self, symbol: str, date: str) -> dict[str, Any] | None:
        answer = await self.tools.call("price", "get_price_local", {"symbol": symbol, "date": date})
        if "error" in answer:
            self.say(f"SKIP {symbol}: no price for {date}: {answer['error']}")
            return None
        ohlcv = answer.get("ohlcv")
        return ohlcv if isinstance(ohlcv, dict) else None

    async def quotes(self, symbols: tuple[str, ...], yesterday: str) -> list[Quote]:
        quotes = []
        for symbol in symbols:
            try:
                before = await self._bar(symbol, yesterday)
                today = await self._bar(symbol, self.day)
                if before is None or today is None:
                    continue
                quotes.append(
                    Quote(
                        symbol,
                        prev_open=float(before["open"]),
                        prev_close=float(before["close"]),
                        open=float(today["open"]),
                    )
                )
            except ToolFailure as exc:
                self.error(str(exc))
            except (KeyError, TypeError, ValueError) as exc:
                self.error(f"get_price_local on price: unreadable bar for {symbol}: {exc!r}")
        return quotes

    async def execute(self, order: Order, price: float) -> Positions | None:
        verb = order.action.upper()
        try:
            answer = await self.tools.call(
                "trade", order.action, {"symbol": order.symbol, "amount": order.amount}
            )
        except ToolFailure as exc:
            self.error(f"{verb} {order.symbol} {order.amount}: {exc}")
            return None
        if "error" in answer:
            self.tally.rejected += 1
            self.say(f"REJECTED {verb} {order.symbol} {order.amount}: {answer['error']}")
            return None
        self.tally.trades += 1
        self.say(
            f"{verb} {order.symbol} {order.amount} @ {price:.2f} -> cash {cash_of(answer):.2f}"
            f" ({order.reason})"
        )
        return answer


async def _value(tools: Toolbox, settings: RunSettings, tally: Tally, out: TextIO) -> None:
    """Portfolio value at the last walked day's close, summed with the math server."""
    day = tally.valued_on
    if day is None:
        return
    total = cash_of(tally.positions)
    try:
        for symbol, qty in tally.positions.items():
            bar = settings.prices.bar(symbol, day)
            if symbol == "CASH" or not qty or bar is None:
                continue
            worth = await tools.call("math", "multiply", {"a": qty, "b": bar.close_price})
            total = (await tools.call("math", "add", {"a": total, "b": worth["result"]}))["result"]
    except ToolFailure as exc:
        tally.tool_errors += 1
        print(f"{day} ERROR valuing the portfolio: {exc}", file=out, flush=True)
        return
    tally.value = float(total)


async def _trade_day(day: _Day, settings: RunSettings, ledger: Ledger) -> None:
    """One day after the model was moved to it: quotes, decision, orders."""
    tally = day.tally
    try:
        # The ledger, not our memory, is the truth at the open (another writer may exist).
        tally.positions = ledger.latest().positions
    except LedgerError as exc:
        day.error(f"reading the ledger: {exc}")
        return
    yesterday = settings.prices.day_before(day.day)
    if yesterday is None:
        day.say("HOLD (no previous trading day to learn from)")
        return
    quotes = await day.quotes(settings.prices.symbols, yesterday)
    opens = {quote.symbol: quote.open for quote in quotes}
    orders = decide(tally.positions, quotes)
    if not orders:
        day.say("HOLD (no signal)")
    for order in orders:
        positions = await day.execute(order, opens[order.symbol])
        if positions is not None:
            tally.positions = positions


def _describe(group: BaseExceptionGroup[httpx2.TransportError]) -> str:
    """The first transport failure with the URL it was for."""
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    try:
        return f"{first!r} on {first.request.url}"
    except RuntimeError:  # httpx2 raises it when the error carries no request
        return repr(first)


async def run(
    settings: RunSettings,
    set_date: DateSetter,
    out: TextIO,
    *,
    retry_seconds: float = CONNECT_RETRY_SECONDS,
) -> Tally:
    """Walk the trading days after the current one; see the module docstring.

    Args:
        settings: the run's settings.
        set_date: moves the model's ``TODAY_DATE`` and returns once its servers are
            ready; raises ``DateChangeError`` when it cannot.
        out: where decision lines and the summary go.
        retry_seconds: how long a refused connection to a server is retried.

    Returns:
        The tally; ``tool_errors == 0`` means success.
    """
    tally = Tally()
    ledger = Ledger(settings.data_dir, settings.signature)
    try:
        latest = ledger.latest()
    except LedgerError as exc:
        tally.tool_errors += 1
        print(f"ERROR {AGENT}: SIGNATURE {settings.signature!r}: {exc}", file=out, flush=True)
        print(tally.summary(), file=out, flush=True)
        return tally
    tally.positions = latest.positions
    # Resume after whatever is later: the ledger's last row or the TODAY_DATE we were given.
    start = max(latest.date, settings.start or latest.date)
    days = settings.prices.days_after(start)[: settings.days]
    if not days:
        # Said plainly, never a silent run of nothing (repeated runs continue the ledger).
        print(
            f"{AGENT}: {settings.signature} has no trading day left after {start} in "
            f"{settings.prices.path}: its ledger {ledger.path} is at the end; {HOW_TO_RESET}",
            file=out,
        )
        print(tally.summary(), file=out, flush=True)
        return tally
    print(f"{AGENT}: {settings.signature} trades {len(days)} day(s) after {start}", file=out)
    urls = {"trade": settings.trade_url, "price": settings.price_url, "math": settings.math_url}
    try:
        async with Toolbox(urls, retry_seconds=retry_seconds) as tools:
            for date in days:
                day = _Day(tools, tally, out, date)
                try:
                    await set_date(date)
                except DateChangeError as exc:
                    day.error(str(exc))
                    break
                tally.days += 1
                tally.valued_on = date
                await _trade_day(day, settings, ledger)
            await _value(tools, settings, tally, out)
    except* httpx2.TransportError as group:
        # The retrying transport gave up: a server stayed unreachable for the whole window.
        tally.tool_errors += 1
        print(f"ERROR {AGENT}: lost a tool server: {_describe(group)}", file=out)
    print(tally.summary(), file=out, flush=True)
    return tally
