"""The agent's MCP clients ride out a server restart and give up loudly on a dead server."""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from services.agent.run import run
from services.agent.settings import RunSettings
from services.agent.toolbox import Toolbox
from services.common.ledger import Ledger
from services.common.prices import DEFAULT_PRICE_FILE, load_price_book
from tests.services.stack import Server, Servers, free_port

# Bounds each scenario; a restart takes about half a second.
SCENARIO_SECONDS = 30.0


def test_a_call_made_while_its_server_restarts_is_retried_until_it_is_back(
    servers: Servers, capsys: pytest.CaptureFixture[str]
) -> None:
    first = servers.start("math", {})
    second: list[Server] = []

    def restart() -> None:
        second.append(servers.start("math", {}, port=first.port))

    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        with anyio.fail_after(SCENARIO_SECONDS):
            async with Toolbox({"math": first.url}) as tools:
                before = await tools.call("math", "add", {"a": 1, "b": 1})
                await anyio.to_thread.run_sync(first.stop)
                async with anyio.create_task_group() as group:
                    group.start_soon(anyio.to_thread.run_sync, restart)
                    # Sent while nothing listens: refused, retried, answered by the new process.
                    after = await tools.call("math", "multiply", {"a": 3, "b": 4})
                return before, after

    before, after = anyio.run(scenario)

    assert (before, after) == ({"result": 2.0}, {"result": 12.0})
    assert second[0].health["boot_id"] != first.health["boot_id"]
    assert f"agent: 127.0.0.1:{first.port} refused" in capsys.readouterr().err


def test_a_server_that_stays_down_ends_the_run_with_a_counted_error(data_dir: Path) -> None:
    Ledger(data_dir, "alpha").register("2025-10-01", 10000, ["AAPL"])
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    settings = RunSettings(
        signature="alpha",
        trade_url=dead,
        price_url=dead,
        math_url=dead,
        days=1,
        start=None,
        data_dir=data_dir,
        prices=load_price_book(DEFAULT_PRICE_FILE),
    )
    out = io.StringIO()

    async def no_supervisor(day: str) -> None:
        return None

    async def scenario() -> int:
        with anyio.fail_after(SCENARIO_SECONDS):
            tally = await run(settings, no_supervisor, out, retry_seconds=0.3)
            return tally.tool_errors

    assert anyio.run(scenario) == 1
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("ERROR agent: lost a tool server: ConnectError"), lines
    assert "tool_errors=1" in lines[-1]
