"""The incident's legacy trade server (``python -m scripts.incident.legacy_trade``, a
reproduction aid): identity from a runtime-env file at each call, the incident's message
when it is not there; refuses to start on a bad environment; the reference trade server
has no such mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from scripts.incident.legacy_trade.server import NO_SIGNATURE, NO_TODAY_DATE, settings_for_call
from scripts.incident.legacy_trade.settings import LegacyTradeSettings
from services.common.ledger import Ledger
from services.common.prices import DEFAULT_PRICE_FILE, load_price_book
from services.common.settings import Listen
from tests.services.stack import Server, Servers, run_module

# Bounds one test's MCP conversation; real calls take milliseconds.
CALL_SECONDS = 20.0
EX_CONFIG = 78
YESTERDAY, TODAY, LATER = "2025-10-01", "2025-10-02", "2025-10-03"
HEAVY = {"mcp", "mcp_types", "uvicorn", "starlette", "pydantic", "anyio", "httpx2"}
PRICES = load_price_book(DEFAULT_PRICE_FILE)
LEGACY = "scripts.incident.legacy_trade"


def start_legacy(servers: Servers, env: dict[str, str]) -> Server:
    return servers.start("legacy_trade", env, module=LEGACY)


def call(url: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    async def work() -> CallToolResult:
        with anyio.fail_after(CALL_SECONDS):
            async with Client(url) as client:
                return await client.call_tool(tool, arguments)

    return anyio.run(work)


def text_of(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def register(data_dir: Path, signature: str) -> Ledger:
    ledger = Ledger(data_dir, signature)
    ledger.register(YESTERDAY, 10000, PRICES.symbols)
    return ledger


def test_it_starts_without_signature_and_each_trade_fails_with_the_incidents_message(
    servers: Servers, data_dir: Path, tmp_path: Path
) -> None:
    runtime_env = tmp_path / "wiped" / ".runtime_env.json"
    env = {"RUNTIME_ENV_PATH": str(runtime_env), "TODAY_DATE": TODAY, "DATA_DIR": str(data_dir)}

    trade = start_legacy(servers, env)

    assert trade.health["signature"] is None
    assert trade.health["today_date"] == TODAY
    for tool in ("sell", "buy"):
        result = call(trade.url, tool, {"symbol": "AAPL", "amount": 1})
        assert text_of(result).endswith(f": {NO_SIGNATURE}")
    assert "LEGACY MODE" in trade.output()
    assert trade.health["server"] == "legacy_trade"
    assert f"Tool 'sell' failed: 'Error executing tool sell: {NO_SIGNATURE}'" in trade.output()
    assert not runtime_env.exists()


def test_it_reads_the_runtime_file_at_every_call_so_a_late_write_is_seen(
    servers: Servers, data_dir: Path, tmp_path: Path
) -> None:
    ledger = register(data_dir, "alpha")
    runtime_env = tmp_path / ".runtime_env.json"
    env = {"RUNTIME_ENV_PATH": str(runtime_env), "TODAY_DATE": TODAY, "DATA_DIR": str(data_dir)}
    trade = start_legacy(servers, env)
    buy = {"symbol": "AAPL", "amount": 2}

    before = call(trade.url, "buy", buy)
    runtime_env.write_text(json.dumps({"TODAY_DATE": TODAY}))  # the key is still missing
    without_key = call(trade.url, "buy", buy)
    runtime_env.write_text(json.dumps({"SIGNATURE": "alpha", "IF_TRADE": False}))
    after = call(trade.url, "buy", buy)

    assert text_of(before).endswith(NO_SIGNATURE)
    assert text_of(without_key).endswith(NO_SIGNATURE)
    assert not after.is_error, after.content
    assert after.structured_content is not None
    assert after.structured_content["AAPL"] == 2
    latest = ledger.latest()
    assert (latest.date, latest.action is not None and latest.action.amount) == (TODAY, 2)


def test_it_takes_today_from_the_file_when_the_environment_has_none(
    servers: Servers, data_dir: Path, tmp_path: Path
) -> None:
    ledger = register(data_dir, "alpha")
    runtime_env = tmp_path / ".runtime_env.json"
    runtime_env.write_text(json.dumps({"SIGNATURE": "alpha"}))
    trade = start_legacy(servers, {"RUNTIME_ENV_PATH": str(runtime_env), "DATA_DIR": str(data_dir)})

    no_day = call(trade.url, "buy", {"symbol": "AAPL", "amount": 1})
    runtime_env.write_text(json.dumps({"SIGNATURE": "alpha", "TODAY_DATE": LATER}))
    on_later = call(trade.url, "buy", {"symbol": "AAPL", "amount": 1})

    assert trade.health["today_date"] is None
    assert text_of(no_day).endswith(NO_TODAY_DATE)
    assert not on_later.is_error, on_later.content
    bar = PRICES.bar("AAPL", LATER)
    assert bar is not None
    assert ledger.latest().date == LATER
    assert ledger.latest().positions["CASH"] == round(10000 - bar.open_price, 4)


BAD_FILES: list[tuple[str, str | None, str]] = [
    ("", None, NO_SIGNATURE),  # empty file: unreadable JSON reads as empty, as AI-Trader's
    ("[1, 2]", None, NO_SIGNATURE),  # not an object
    (json.dumps({"TODAY_DATE": TODAY}), None, NO_SIGNATURE),
    (json.dumps({"SIGNATURE": ""}), TODAY, NO_SIGNATURE),
    (json.dumps({"SIGNATURE": "../escape"}), TODAY, "SIGNATURE '../escape' from RUNTIME_ENV_PATH"),
    (json.dumps({"SIGNATURE": 7}), TODAY, "SIGNATURE 7 from RUNTIME_ENV_PATH"),
    (json.dumps({"SIGNATURE": "alpha"}), None, NO_TODAY_DATE),
    (
        json.dumps({"SIGNATURE": "alpha", "TODAY_DATE": "2025-02-30"}),
        None,
        "TODAY_DATE '2025-02-30'",
    ),
]


def test_a_runtime_file_that_cannot_name_the_trader_fails_the_call_before_any_path_is_built(
    tmp_path: Path,
) -> None:
    runtime_env = tmp_path / ".runtime_env.json"
    for text, today, message in BAD_FILES:
        runtime_env.write_text(text)
        legacy = LegacyTradeSettings(Listen(port=0), runtime_env, today, tmp_path, PRICES)
        with pytest.raises(ToolError) as caught:
            settings_for_call(legacy)
        assert str(caught.value).startswith(message), (text, str(caught.value))
    runtime_env.unlink()
    missing = LegacyTradeSettings(Listen(port=0), runtime_env, TODAY, tmp_path, PRICES)
    with pytest.raises(ToolError, match=f"^{NO_SIGNATURE}$"):
        settings_for_call(missing)
    assert [path.name for path in tmp_path.iterdir()] == []


def test_the_environments_today_wins_over_the_runtime_files(tmp_path: Path) -> None:
    runtime_env = tmp_path / ".runtime_env.json"
    runtime_env.write_text(json.dumps({"SIGNATURE": "alpha", "TODAY_DATE": LATER}))
    legacy = LegacyTradeSettings(Listen(port=0), runtime_env, TODAY, tmp_path, PRICES)

    settings = settings_for_call(legacy)

    assert (settings.signature, settings.today) == ("alpha", TODAY)


FAIL_FAST = [
    ({"TODAY_DATE": TODAY}, "legacy_trade: RUNTIME_ENV_PATH environment variable is not set"),
    (
        {"RUNTIME_ENV_PATH": "", "TODAY_DATE": TODAY},
        "legacy_trade: RUNTIME_ENV_PATH environment variable is not set",
    ),
    # Given its identity at exec time, a trade server is the reference one, not this.
    (
        {"RUNTIME_ENV_PATH": "x.json", "SIGNATURE": "alpha"},
        "legacy_trade: SIGNATURE is set, but this reproduction reads it from RUNTIME_ENV_PATH",
    ),
    (
        {"RUNTIME_ENV_PATH": "x.json", "TODAY_DATE": "2025-02-30"},
        "legacy_trade: TODAY_DATE '2025-02-30'",
    ),
    (
        {"RUNTIME_ENV_PATH": "x.json", "DATA_DIR": "/nonexistent/data"},
        "legacy_trade: DATA_DIR '/nonex",
    ),
    ({"RUNTIME_ENV_PATH": "x.json", "DATA_DIR": "."}, "legacy_trade: PORT environment variable"),
]


@pytest.mark.parametrize(("env", "message"), FAIL_FAST)
def test_it_checks_the_rest_of_the_environment_at_start_and_exits_78_before_the_sdk(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run_module(LEGACY, env, tmp_path, flags=("-X", "importtime"))

    assert result.returncode == EX_CONFIG, result.stderr
    errors = [line for line in result.stderr.splitlines() if "|" not in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(message), result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert {name for name in imported if name.split(".")[0] in HEAVY} == set()
    assert "scripts.incident.legacy_trade.settings" in imported
    assert result.stdout == ""


def test_the_reference_trade_server_has_no_legacy_mode_a_runtime_file_never_replaces_signature(
    tmp_path: Path,
) -> None:
    runtime_env = tmp_path / ".runtime_env.json"
    runtime_env.write_text(json.dumps({"SIGNATURE": "alpha", "TODAY_DATE": TODAY}))
    env = {"RUNTIME_ENV_PATH": str(runtime_env), "TODAY_DATE": TODAY, "DATA_DIR": str(tmp_path)}

    result = run_module("services.trade", env, tmp_path, args=("--port", "0"))

    assert result.returncode == EX_CONFIG, result.stderr
    assert result.stderr == "trade: SIGNATURE environment variable is not set\n"
    assert result.stdout == ""
