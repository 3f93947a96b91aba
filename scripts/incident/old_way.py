"""Part 1, the old way: servers first, the identity in a runtime-env file nobody wrote.

As on Render after a restart: the persistent disk (``DATA_DIR``) still holds the model's
ledger with yesterday's holding; the disk that held ``.runtime_env.json`` was wiped. The
trade (the legacy one, ``scripts.incident.legacy_trade``), price and math servers start
all at once, before any agent; the
agent's ``init`` runs after them with no hand-off (its keys end on its own stdout), so
the file the trade server reads never appears; the agent's first day then sells the
holding, and the ``sell`` fails with "SIGNATURE environment variable is not set".

Invariants: the model plays its keys from the repository's ``supervise.toml``; the
holding is chosen so the reference rule sells it on the first day (its symbol fell the
day before), so the first order is a ``sell``; all three servers are stopped before
``reproduce_old_way`` returns.
"""

from __future__ import annotations

import io
import math
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio

from scripts.incident.children import (
    STACK_FILE,
    Children,
    IncidentError,
    child_env,
    free_port,
    indent,
    wait_healthy,
)
from scripts.incident.legacy_trade.server import NO_SIGNATURE
from services.agent.rule import POSITION_BUDGET, SELL_MOVE
from services.agent.run import DateChangeError, DateSetter, Tally, run
from services.agent.settings import RunSettings, derive_signature
from services.common.ledger import Action, Ledger, Proposal, Row
from services.common.prices import DEFAULT_PRICE_FILE, PriceBook, load_price_book

# The model part 1 plays; its keys (BASE_MODEL, INITIAL_CASH, ...) come from STACK_FILE.
MODEL = "alpha"
# What runs each server the old way: trade is the incident's, the others the reference ones.
SERVER_MODULES = {
    "trade": "scripts.incident.legacy_trade",
    "price": "services.price",
    "math": "services.math",
}
# AI-Trader's runtime-env file, in a directory the restart wiped.
RUNTIME_ENV_NAME = ".runtime_env.json"
# The agent's init checks a ledger: milliseconds.
INIT_SECONDS = 15.0
# One trading day: a few dozen MCP calls on loopback.
DAY_SECONDS = 60.0
# A refused connect is retried this long; the servers are already up.
RETRY_SECONDS = 2.0
_ORDER = re.compile(r" (BUY|SELL) \S+ \d+")


@dataclass
class OldWay:
    """What part 1 saw."""

    signature: str
    data_dir: Path  # the persistent disk: the ledger lives here
    runtime_env: Path
    runtime_env_written: bool  # did anything write the file before the first sell?
    held: Action  # the buy before the restart: the holding the rule sells on the first day
    first_day: str
    agent_output: str
    tally: Tally
    first_order: str | None  # the first line about an order (done, rejected or failed)

    @property
    def reproduced(self) -> bool:
        """The first order was a SELL that failed with the incident's message, counted."""
        return (
            self.first_order is not None
            and self.first_order.startswith(f"{self.first_day} ERROR SELL ")
            and NO_SIGNATURE in self.first_order
            and self.tally.tool_errors > 0
            and self.tally.trades == 0
            and " HOLD" not in self.agent_output
        )


def model_keys(model: str) -> dict[str, str]:
    """The ``[models.MODEL]`` table of the repository's stack file."""
    with STACK_FILE.open("rb") as handle:
        models: dict[str, dict[str, Any]] = tomllib.load(handle).get("models", {})
    if model not in models:
        raise IncidentError("reading the stack file", f"{STACK_FILE} has no [models.{model}]")
    return {key: str(value) for key, value in models[model].items()}


def _falling_symbol(prices: PriceBook, day: str) -> tuple[str, float]:
    """A symbol (and its open) that fell enough on ``day`` for the rule to sell it next day."""
    for symbol in prices.symbols:
        bar = prices.bar(symbol, day)
        if bar is not None and bar.close_price / bar.open_price - 1.0 <= -SELL_MOVE:
            return symbol, bar.open_price
    raise IncidentError("choosing a holding", f"no symbol fell {SELL_MOVE:.1%} on {day}")


def _seed_ledger(ledger: Ledger, prices: PriceBook, day: str, cash: float) -> Action:
    """Yesterday's session, before the restart: registered, and bought what the rule sells."""
    symbol, price = _falling_symbol(prices, day)
    bought = Action("buy", symbol, math.floor(cash * POSITION_BUDGET / price))
    ledger.register(day, cash, prices.symbols)

    def buy(latest: Row) -> Proposal:
        positions = dict(latest.positions)
        positions[symbol] = bought.amount
        positions["CASH"] = round(float(positions["CASH"]) - bought.amount * price, 4)
        return Proposal(bought, positions)

    ledger.transact(day, buy)
    return bought


def _servers_day(day: str) -> DateSetter:
    """The old way's day: fixed when the servers started; nobody can move it."""

    async def set_date(wanted: str) -> None:
        if wanted != day:
            raise DateChangeError(wanted, f"the servers were started on {day}")

    return set_date


def _first_day(settings: RunSettings, day: str) -> tuple[Tally, str]:
    """The agent's run over one day, in this process; its printed lines."""
    captured = io.StringIO()

    async def bounded() -> Tally:
        with anyio.fail_after(DAY_SECONDS):
            return await run(settings, _servers_day(day), captured, retry_seconds=RETRY_SECONDS)

    return anyio.run(bounded), captured.getvalue()


def reproduce_old_way(workdir: Path, out: TextIO) -> OldWay:
    """Part 1; see the module docstring. Narrates on ``out``.

    Raises:
        IncidentError: a server or the agent's init could not be run.
    """
    prices = load_price_book(DEFAULT_PRICE_FILE)
    keys = model_keys(MODEL)
    signature = derive_signature(keys["BASE_MODEL"])
    yesterday, today = prices.trading_days[0], prices.trading_days[1]
    disk, wiped, logs = workdir / "disk", workdir / "ephemeral", workdir / "logs"
    for directory in (disk, wiped, logs):
        directory.mkdir(parents=True, exist_ok=True)
    runtime_env = wiped / RUNTIME_ENV_NAME

    print("== Part 1: the old way (servers first, identity from a runtime-env file) ==", file=out)
    bought = _seed_ledger(Ledger(disk, signature), prices, yesterday, float(keys["INITIAL_CASH"]))
    print(
        f"persistent disk: {signature}'s ledger from before the restart, holding "
        f"{bought.symbol} {bought.amount} bought on {yesterday}",
        file=out,
    )
    print(f"wiped disk: {runtime_env} exists: {runtime_env.exists()}", file=out)

    with Children(logs) as children:
        ports = {name: free_port() for name in ("trade", "price", "math")}
        common = {"DATA_DIR": str(disk), "TODAY_DATE": today}
        envs = {
            "trade": {**common, "RUNTIME_ENV_PATH": str(runtime_env)},  # read at each call
            "price": common,
            "math": {},
        }
        servers = {
            name: children.start(
                name,
                [sys.executable, "-m", SERVER_MODULES[name], "--port", str(port)],
                child_env(envs[name]),
                workdir,
            )
            for name, port in ports.items()
        }
        for name, child in servers.items():
            wait_healthy(child, ports[name])
        listening = ", ".join(f"{name} :{port}" for name, port in ports.items())
        print(f"started all at once, before any agent: {listening}", file=out)
        print(indent(servers["trade"].output(), "    trade | "), end="", file=out)

        init = children.start(
            "init",
            [sys.executable, "-m", "services.agent", "init"],
            child_env({**keys, "DATA_DIR": str(disk)}),
            workdir,
        )
        code = init.wait(INIT_SECONDS)
        print(f"agent init exited {code}; no hand-off, its keys went to its stdout:", file=out)
        print(indent(init.output()), end="", file=out)
        if code != 0:
            raise IncidentError("the agent's init", f"exit status {code}")
        written = runtime_env.exists()
        print(f"the file the trade server reads, {runtime_env}, exists: {written}", file=out)

        settings = RunSettings(
            signature=signature,
            trade_url=f"http://127.0.0.1:{ports['trade']}/mcp",
            price_url=f"http://127.0.0.1:{ports['price']}/mcp",
            math_url=f"http://127.0.0.1:{ports['math']}/mcp",
            days=1,
            start=None,
            data_dir=disk,
            prices=prices,
        )
        tally, output = _first_day(settings, today)
        print(f"agent run, first trading day {today}:", file=out)
        print(indent(output), end="", file=out)
        failed = [line for line in servers["trade"].output().splitlines() if "failed" in line]
        print(indent("\n".join(failed[:1]), "    trade | "), end="", file=out)

    orders = [line for line in output.splitlines() if _ORDER.search(line)]
    return OldWay(
        signature=signature,
        data_dir=disk,
        runtime_env=runtime_env,
        runtime_env_written=written,
        held=bought,
        first_day=today,
        agent_output=output,
        tally=tally,
        first_order=orders[0] if orders else None,
    )
