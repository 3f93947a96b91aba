"""The reference agent: ``init`` registers and publishes; ``run`` trades through real servers."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread

from services.agent.run import DateChangeError, Tally, run
from services.agent.settings import RunSettings
from services.common.ledger import Ledger
from services.common.prices import DEFAULT_PRICE_FILE, load_price_book
from tests.services.stack import Server, Servers, child_env

# Bounds an init run (milliseconds) and a whole trading run over a few days (seconds).
INIT_SECONDS = 10.0
RUN_SECONDS = 60.0
FIRST_DAY = "2025-10-01"


def agent_init(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.agent", "init"],
        env=child_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=INIT_SECONDS,
        check=False,
    )


def test_init_registers_once_and_publishes_signature_and_today_to_the_hand_off_file(
    tmp_path: Path, data_dir: Path
) -> None:
    hand_off = tmp_path / "supervise.env"
    env = {
        "BASE_MODEL": "gpt-4.1",
        "SIGNATURE": "alpha-v1",
        "DATA_DIR": str(data_dir),
        "SUPERVISE_ENV": str(hand_off),
    }

    first = agent_init(env, tmp_path)
    second = agent_init({**env, "INITIAL_CASH": "5"}, tmp_path)

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    published = f"SIGNATURE=alpha-v1\nTODAY_DATE={FIRST_DAY}\n"
    assert hand_off.read_text() == published * 2
    assert "registered alpha-v1 (us) with 10000.00 cash" in first.stdout
    assert "already registered" in second.stdout
    rows = Ledger(data_dir, "alpha-v1").rows()
    assert len(rows) == 1
    assert rows[0].date == FIRST_DAY
    assert rows[0].positions["CASH"] == 10000.0
    assert set(rows[0].positions) == {*load_price_book(DEFAULT_PRICE_FILE).symbols, "CASH"}


def test_init_derives_the_signature_from_base_model_and_prints_keys_without_a_hand_off_file(
    tmp_path: Path, data_dir: Path
) -> None:
    env = {
        "BASE_MODEL": "openai/gpt-4.1 mini",
        "DATA_DIR": str(data_dir),
        "START_DATE": "2025-10-08",
        "INITIAL_CASH": "2500.5",
    }

    result = agent_init(env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "SIGNATURE=openai-gpt-4.1-mini\nTODAY_DATE=2025-10-08\n" in result.stdout
    assert "SUPERVISE_ENV is not set" in result.stderr
    assert Ledger(data_dir, "openai-gpt-4.1-mini").latest().positions["CASH"] == 2500.5


def test_init_after_trading_publishes_the_ledgers_latest_day_instead_of_rewinding(
    tmp_path: Path, data_dir: Path
) -> None:
    ledger = Ledger(data_dir, "alpha")
    ledger.register(FIRST_DAY, 100, ["AAPL"])
    with ledger.path.open("a") as handle:
        row = {
            "date": "2025-10-06",
            "id": 1,
            "this_action": {"action": "buy", "symbol": "AAPL", "amount": 0},
            "positions": {"AAPL": 0, "CASH": 100.0},
        }
        handle.write(json.dumps(row) + "\n")
    hand_off = tmp_path / "supervise.env"

    result = agent_init(
        {"SIGNATURE": "alpha", "DATA_DIR": str(data_dir), "SUPERVISE_ENV": str(hand_off)}, tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert hand_off.read_text() == "SIGNATURE=alpha\nTODAY_DATE=2025-10-06\n"


class DateMover:
    """Stands in for the supervisor: restarts the model's date-dependent servers on a new day."""

    def __init__(self, servers: Servers, env: dict[str, str], trade: Server, price: Server) -> None:
        self.servers, self.env = servers, env
        self.trade, self.price = trade, price
        self.days: list[str] = []

    def _restart(self, day: str) -> None:
        old = (self.trade, self.price)
        for server in old:
            server.signal_stop()
        for server in old:
            server.wait_stopped()
        env = {**self.env, "TODAY_DATE": day}
        self.trade = self.servers.start("trade", env, port=self.trade.port, wait=False)
        self.price = self.servers.start("price", env, port=self.price.port, wait=False)
        for server in (self.trade, self.price):
            if server.wait_ready()["today_date"] != day:
                raise DateChangeError(day, f"{server.name} did not come back on {day}")

    async def __call__(self, day: str) -> None:
        self.days.append(day)
        await anyio.to_thread.run_sync(self._restart, day)


def start_stack(
    servers: Servers, data_dir: Path, trade_signature: str = "alpha"
) -> tuple[DateMover, RunSettings]:
    Ledger(data_dir, "alpha").register(
        FIRST_DAY, 10000, load_price_book(DEFAULT_PRICE_FILE).symbols
    )
    env = {"SIGNATURE": trade_signature, "TODAY_DATE": FIRST_DAY, "DATA_DIR": str(data_dir)}
    trade = servers.start("trade", env, wait=False)
    price = servers.start("price", env, wait=False)
    math = servers.start("math", {}, wait=False)
    for server in (trade, price, math):
        server.wait_ready()
    settings = RunSettings(
        signature="alpha",
        trade_url=trade.url,
        price_url=price.url,
        math_url=math.url,
        days=3,
        start=None,
        data_dir=data_dir,
        prices=load_price_book(DEFAULT_PRICE_FILE),
    )
    return DateMover(servers, env, trade, price), settings


def run_agent(settings: RunSettings, mover: DateMover) -> tuple[Tally, str]:
    out = io.StringIO()

    async def bounded() -> Tally:
        with anyio.fail_after(RUN_SECONDS):
            return await run(settings, mover, out)

    return anyio.run(bounded), out.getvalue()


def test_run_walks_the_days_moving_today_and_trades_both_ways_with_zero_tool_errors(
    servers: Servers, data_dir: Path
) -> None:
    mover, settings = start_stack(servers, data_dir)

    tally, output = run_agent(settings, mover)

    assert mover.days == ["2025-10-02", "2025-10-03", "2025-10-06"]
    lines = output.splitlines()
    assert any(line.startswith("2025-10-02 BUY ") for line in lines), output
    assert any(" SELL " in line for line in lines), output
    assert not any(" ERROR " in line for line in lines), output
    summary = lines[-1]
    assert summary.startswith("SUMMARY days=3 trades="), output
    assert "tool_errors=0" in summary
    assert tally.tool_errors == 0
    assert tally.days == 3
    trades = [row for row in Ledger(data_dir, "alpha").rows() if row.action is not None]
    assert len(trades) == tally.trades > 0
    assert tally.positions == Ledger(data_dir, "alpha").latest().positions
    assert tally.value is not None
    assert f"value={tally.value:.2f} at the close of 2025-10-06" in summary


def test_a_tool_error_during_run_is_an_error_line_and_counted_never_a_silent_hold(
    servers: Servers, data_dir: Path
) -> None:
    # The trade server serves a signature that was never registered: every trade fails.
    mover, settings = start_stack(servers, data_dir, trade_signature="unregistered")

    tally, output = run_agent(dataclasses.replace(settings, days=1), mover)

    errors = [line for line in output.splitlines() if " ERROR BUY " in line]
    assert errors, output
    assert "trade: no ledger for SIGNATURE 'unregistered'" in errors[0]
    assert tally.tool_errors == len(errors)
    assert f"tool_errors={len(errors)}" in output.splitlines()[-1]
    assert tally.trades == 0
