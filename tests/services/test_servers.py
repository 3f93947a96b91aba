"""The trade, price and math servers as real processes, called over MCP streamable HTTP."""

from __future__ import annotations

import functools
import json
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from services.common.ledger import Ledger
from tests.services.stack import Server, Servers, child_env, get_json

# Bounds one test's MCP conversation; real calls take milliseconds.
CALL_SECONDS = 20.0
TODAY = "2025-10-02"

T = TypeVar("T")


def bar(open_: str, close: str) -> dict[str, str]:
    return {
        "1. buy price": open_,
        "2. high": "999.0000",
        "3. low": "1.0000",
        "4. sell price": close,
        "5. volume": "1000",
    }


def write_prices(path: Path) -> Path:
    """AAPL on three days, GAP with no bar on TODAY, in AI-Trader's merged.jsonl shape."""
    documents = [
        {
            "Meta Data": {"1. Information": "test prices", "2. Symbol": "AAPL"},
            "Time Series (Daily)": {
                "2025-10-01": bar("99.0000", "100.0000"),
                TODAY: bar("100.5000", "101.2500"),
                "2025-10-03": bar("102.0000", "103.0000"),
            },
        },
        {
            "Meta Data": {"1. Information": "test prices", "2. Symbol": "MSFT"},
            "Time Series (Daily)": {
                "2025-10-01": bar("400.0000", "401.0000"),
                TODAY: bar("402.0000", "403.0000"),
            },
        },
        {
            "Meta Data": {"1. Information": "test prices", "2. Symbol": "GAP"},
            "Time Series (Daily)": {"2025-10-01": bar("10.0000", "11.0000")},
        },
    ]
    path.write_text("".join(json.dumps(document) + "\n" for document in documents))
    return path


def in_loop(work: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        with anyio.fail_after(CALL_SECONDS):
            return await work()

    return anyio.run(bounded)


def call(url: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    async def work() -> CallToolResult:
        async with Client(url) as client:
            return await client.call_tool(tool, arguments)

    return in_loop(work)


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    return write_prices(tmp_path / "merged.jsonl")


@pytest.fixture
def trade(servers: Servers, data_dir: Path, prices: Path) -> Server:
    Ledger(data_dir, "alpha").register("2025-10-01", 1000, ["AAPL", "MSFT", "GAP"])
    env = {
        "SIGNATURE": "alpha",
        "TODAY_DATE": TODAY,
        "DATA_DIR": str(data_dir),
        "PRICE_FILE": str(prices),
    }
    return servers.start("trade", env)


def test_buy_and_sell_fill_at_the_open_and_return_the_new_positions(
    trade: Server, data_dir: Path
) -> None:
    bought = structured(call(trade.url, "buy", {"symbol": "AAPL", "amount": 4}))
    sold = structured(call(trade.url, "sell", {"symbol": "AAPL", "amount": 1}))

    assert bought == {"AAPL": 4, "MSFT": 0, "GAP": 0, "CASH": 1000 - 4 * 100.5}
    assert sold == {"AAPL": 3, "MSFT": 0, "GAP": 0, "CASH": 1000 - 3 * 100.5}
    rows = Ledger(data_dir, "alpha").rows()
    assert [(r.id, r.date, r.action and r.action.action) for r in rows] == [
        (0, "2025-10-01", None),
        (1, TODAY, "buy"),
        (2, TODAY, "sell"),
    ]


REJECTIONS: list[tuple[str, str, int, dict[str, Any]]] = [
    (
        "buy",
        "AAPL",
        10,
        {
            "error": "Insufficient cash! This action will not be allowed.",
            "required_cash": 1005.0,
            "cash_available": 1000.0,
        },
    ),
    ("sell", "MSFT", 1, {"error": "No position for MSFT! This action will not be allowed."}),
    ("buy", "ZZZZ", 1, {"error": "Symbol ZZZZ not found! This action will not be allowed."}),
    ("sell", "ZZZZ", 1, {"error": "Symbol ZZZZ not found! This action will not be allowed."}),
    ("buy", "GAP", 1, {"error": f"No price for GAP on {TODAY}! This action will not be allowed."}),
    (
        "buy",
        "AAPL",
        0,
        {
            "error": "Amount must be a positive integer! This action will not be allowed.",
            "amount": 0,
        },
    ),
    (
        "sell",
        "AAPL",
        -3,
        {
            "error": "Amount must be a positive integer! This action will not be allowed.",
            "amount": -3,
        },
    ),
]


def test_business_rejections_are_plain_error_results_and_write_nothing(
    trade: Server, data_dir: Path
) -> None:
    before = Ledger(data_dir, "alpha").path.read_bytes()

    async def work() -> list[dict[str, Any]]:
        async with Client(trade.url) as client:
            return [
                structured(await client.call_tool(tool, {"symbol": symbol, "amount": amount}))
                for tool, symbol, amount, _ in REJECTIONS
            ]

    results = in_loop(work)

    for (tool, symbol, amount, expected), result in zip(REJECTIONS, results, strict=True):
        assert result == {**expected, "symbol": symbol, "date": TODAY}, (tool, symbol, amount)
    assert Ledger(data_dir, "alpha").path.read_bytes() == before


def test_selling_more_than_held_reports_what_is_held(trade: Server) -> None:
    structured(call(trade.url, "buy", {"symbol": "AAPL", "amount": 2}))

    result = structured(call(trade.url, "sell", {"symbol": "AAPL", "amount": 5}))

    assert result == {
        "error": "Insufficient shares! This action will not be allowed.",
        "have": 2,
        "want_to_sell": 5,
        "symbol": "AAPL",
        "date": TODAY,
    }


def test_a_tool_error_for_a_missing_ledger_reaches_the_client_with_its_text(
    trade: Server, data_dir: Path
) -> None:
    ledger = Ledger(data_dir, "alpha")
    ledger.path.unlink()  # as a platform that wipes its disk under a running server

    result = call(trade.url, "buy", {"symbol": "AAPL", "amount": 1})

    assert result.is_error
    text = text_of(result)
    assert "trade: no ledger for SIGNATURE 'alpha'" in text
    assert str(ledger.path) in text
    assert "trade: no ledger" in trade.output()


@pytest.fixture
def price(servers: Servers, prices: Path) -> Server:
    return servers.start("price", {"TODAY_DATE": TODAY, "PRICE_FILE": str(prices)})


def test_a_past_day_has_the_whole_bar_as_the_file_writes_it(price: Server) -> None:
    result = structured(
        call(price.url, "get_price_local", {"symbol": "AAPL", "date": "2025-10-01"})
    )

    assert result == {
        "symbol": "AAPL",
        "date": "2025-10-01",
        "ohlcv": {
            "open": "99.0000",
            "high": "999.0000",
            "low": "1.0000",
            "close": "100.0000",
            "volume": "1000",
        },
    }


def test_today_shows_only_the_open_and_hides_the_rest_of_the_day(price: Server) -> None:
    result = structured(call(price.url, "get_price_local", {"symbol": "AAPL", "date": TODAY}))

    # AI-Trader's words for what the open cannot know, and no number of the day's bar.
    assert result == {
        "symbol": "AAPL",
        "date": TODAY,
        "ohlcv": {
            "open": "100.5000",
            "high": "You can not get the current high price",
            "low": "You can not get the current low price",
            "close": "You can not get the next close price",
            "volume": "You can not get the current volume",
        },
    }
    later = {"999.0000", "1.0000", "101.2500", "1000"}
    assert not later & set(result["ohlcv"].values())


PRICE_ERRORS = [
    ("AAPL", "2025-10-03", f"Date 2025-10-03 is after today ({TODAY})"),
    ("ZZZZ", "2025-10-01", "No records found for stock ZZZZ in local data"),
    ("GAP", TODAY, f"Data not found for date {TODAY}."),
    ("AAPL", "10/01/2025", "date must be in YYYY-MM-DD format"),
]


def test_a_future_date_and_missing_data_are_error_results_that_leak_no_later_date(
    price: Server,
) -> None:
    async def work() -> list[dict[str, Any]]:
        async with Client(price.url) as client:
            return [
                structured(await client.call_tool("get_price_local", {"symbol": s, "date": d}))
                for s, d, _ in PRICE_ERRORS
            ]

    results = in_loop(work)

    for (symbol, date, error), result in zip(PRICE_ERRORS, results, strict=True):
        assert result["error"].startswith(error), result
        assert (result["symbol"], result["date"]) == (symbol, date)
        mentioned = set(re.findall(r"\d{4}-\d{2}-\d{2}", result["error"])) - {date}
        assert all(day <= TODAY for day in mentioned), result


def test_math_adds_and_multiplies(servers: Servers) -> None:
    math = servers.start("math", {})

    assert structured(call(math.url, "add", {"a": 2, "b": 3.5})) == {"result": 5.5}
    assert structured(call(math.url, "multiply", {"a": 4, "b": 2.5})) == {"result": 10.0}


def test_each_server_lists_ai_traders_tool_names_under_its_server_name(
    servers: Servers, data_dir: Path, prices: Path
) -> None:
    env = {
        "SIGNATURE": "alpha",
        "TODAY_DATE": TODAY,
        "DATA_DIR": str(data_dir),
        "PRICE_FILE": str(prices),
    }
    expected = {
        "trade": ("TradeTools", ["buy", "sell"]),
        "price": ("LocalPrices", ["get_price_local"]),
        "math": ("Math", ["add", "multiply"]),
    }
    started = {name: servers.start(name, env, wait=False) for name in expected}
    for server in started.values():
        server.wait_ready()

    async def listing(url: str) -> tuple[str, list[str]]:
        async with Client(url) as client:
            tools = await client.list_tools()
            meta = tools.meta or {}
            return meta["io.modelcontextprotocol/serverInfo"]["name"], sorted(
                t.name for t in tools.tools
            )

    for name, (server_name, tools) in expected.items():
        assert in_loop(functools.partial(listing, started[name].url)) == (server_name, tools)


def test_healthz_names_the_server_its_signature_pid_and_a_fresh_boot_id_per_start(
    servers: Servers, data_dir: Path, prices: Path
) -> None:
    env = {
        "SIGNATURE": "alpha",
        "TODAY_DATE": TODAY,
        "DATA_DIR": str(data_dir),
        "PRICE_FILE": str(prices),
    }
    first = servers.start("trade", env)
    first.stop()
    second = servers.start("trade", env, port=first.port)
    math = servers.start("math", {})

    assert first.health == {
        "server": "trade",
        "signature": "alpha",
        "pid": first.proc.pid,
        "boot_id": first.health["boot_id"],
        "today_date": TODAY,
    }
    assert second.health["pid"] == second.proc.pid
    assert second.health["boot_id"] != first.health["boot_id"]
    assert get_json(f"http://127.0.0.1:{math.port}/healthz")["signature"] is None
    assert f"trade: serving http://127.0.0.1:{first.port}/mcp" in first.output()


def test_a_server_serves_on_an_inherited_listening_socket(servers: Servers, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    # The launcher does what systemd does between fork and exec: the socket on fd 3,
    # LISTEN_PID naming the process that will exec the server (exec keeps the pid).
    launcher = (
        "import os, sys\n"
        f"os.dup2({listener.fileno()}, 3)\n"
        f"os.close({listener.fileno()})\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'services.math'])\n"
    )
    argv = [sys.executable, "-c", launcher]
    child = servers.children.start(
        "math", argv, child_env({}), tmp_path, pass_fds=(listener.fileno(),)
    )
    listener.close()
    server = Server("math", port, child)
    proc = child.proc
    try:
        health = server.wait_ready()
        result = structured(call(server.url, "multiply", {"a": 6, "b": 7}))
    finally:
        server.stop()

    assert health["pid"] == proc.pid
    assert result == {"result": 42.0}
    assert proc.returncode in (-signal.SIGTERM, 0)
    assert f"math: serving http://127.0.0.1:{port}/mcp" in server.output()
