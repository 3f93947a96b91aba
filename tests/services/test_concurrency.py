"""Many processes trading one signature at once never lose or duplicate a ledger row."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

from services.common.ledger import Ledger
from services.common.prices import DEFAULT_PRICE_FILE, load_price_book
from tests.services.stack import Server, Servers

PROCESSES = 8
BUYS_PER_PROCESS = 50
INITIAL_CASH = 1_000_000.0
TODAY = "2025-10-02"
# Bounds the whole burst of 400 calls; it takes about a second.
BURST_SECONDS = 60.0


async def buy_concurrently(server: Server, failures: list[str]) -> None:
    async with Client(server.url) as client, anyio.create_task_group() as group:
        for _ in range(BUYS_PER_PROCESS):

            async def buy() -> None:
                result = await client.call_tool("buy", {"symbol": "AAPL", "amount": 1})
                if result.is_error or "error" in (result.structured_content or {}):
                    failures.append(repr(result))

            group.start_soon(buy)


def test_eight_processes_times_fifty_concurrent_buys_leave_four_hundred_distinct_rows(
    servers: Servers, data_dir: Path
) -> None:
    ledger = Ledger(data_dir, "crowd")
    ledger.register("2025-10-01", INITIAL_CASH, ["AAPL"])
    env = {"SIGNATURE": "crowd", "TODAY_DATE": TODAY, "DATA_DIR": str(data_dir)}
    fleet = [servers.start("trade", env, wait=False) for _ in range(PROCESSES)]
    for server in fleet:
        server.wait_ready()
    failures: list[str] = []

    async def burst() -> None:
        with anyio.fail_after(BURST_SECONDS):
            async with anyio.create_task_group() as group:
                for server in fleet:
                    group.start_soon(buy_concurrently, server, failures)

    anyio.run(burst)

    assert failures == []
    lines = ledger.path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) - 1 == 1 + PROCESSES * BUYS_PER_PROCESS
    rows = ledger.rows()
    assert sorted(row.id for row in rows) == list(range(1 + PROCESSES * BUYS_PER_PROCESS))
    assert [row.id for row in rows] == sorted(row.id for row in rows)
    price = load_price_book(DEFAULT_PRICE_FILE).bar("AAPL", TODAY)
    assert price is not None
    final = ledger.latest().positions
    assert final["AAPL"] == PROCESSES * BUYS_PER_PROCESS
    expected_cash = INITIAL_CASH - PROCESSES * BUYS_PER_PROCESS * price.open_price
    assert abs(float(final["CASH"]) - expected_cash) < 1e-6
