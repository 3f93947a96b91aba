"""The incident (issue 5), with real servers and real MCP calls: the old way fails the
agent's first ``sell`` with the SIGNATURE error; under ``supervise run`` the same agent
completes every day for both models with zero tool errors."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.incident.children import REPO, child_env
from scripts.incident.legacy_trade.server import NO_SIGNATURE
from scripts.incident.main import verdict
from scripts.incident.old_way import OldWay, reproduce_old_way
from scripts.incident.supervised import Supervised, run_supervised
from services.agent.run import Tally
from services.common.ledger import Action, Ledger

SIGNATURES = {"alpha": "gpt-4.1", "beta": "claude-sonnet-4"}
SCRIPT = REPO / "scripts" / "incident.py"
# The whole script takes a few seconds; bounded inside pytest's 120 s.
SCRIPT_SECONDS = 100.0
# Part 1 and supervise's start take seconds; the rest of the 120 s is for the stop.
START_SECONDS = 60.0
# A SIGTERMed script stops supervise (its shutdown is bounded by 25 s) before exiting.
INTERRUPT_SECONDS = 40.0
POLL_SECONDS = 0.05


def test_the_old_way_fails_the_agents_first_sell_with_the_signature_error_never_a_hold(
    tmp_path: Path,
) -> None:
    out = io.StringIO()

    old = reproduce_old_way(tmp_path, out)

    narration = out.getvalue()
    assert old.reproduced, narration
    assert old.first_order is not None
    sell = f"{old.first_day} ERROR SELL {old.held.symbol} {old.held.amount}: sell on trade: "
    assert old.first_order.startswith(sell), narration
    assert old.first_order.endswith(NO_SIGNATURE)
    assert not old.runtime_env_written
    assert not old.runtime_env.exists()
    assert old.tally.tool_errors >= 1
    assert old.tally.trades == 0
    assert " HOLD" not in old.agent_output
    assert f"tool_errors={old.tally.tool_errors}" in old.agent_output.splitlines()[-1]
    assert "LEGACY MODE" in narration
    # The sell never reached the ledger: yesterday's holding is still its last row.
    assert Ledger(old.data_dir, old.signature).latest().action == old.held


def test_under_supervise_the_same_agent_completes_every_day_for_both_models_without_tool_errors(
    tmp_path: Path,
) -> None:
    out = io.StringIO()

    new = run_supervised(tmp_path, out, days=3)

    narration = out.getvalue()
    assert new.models == sorted(SIGNATURES)
    for model, signature in SIGNATURES.items():
        assert new.counts(model) == (3, 0), narration
        assert new.gated[model], narration
        assert f"signature {signature}," in new.trade_ready[model]
        assert not [line for line in new.agent_lines[model] if "ERROR" in line], narration
    assert new.exit_code == 0
    assert new.ok


def _old(first_order: str | None, tool_errors: int, trades: int = 0) -> OldWay:
    return OldWay(
        signature="gpt-4.1",
        data_dir=Path("/nonexistent"),
        runtime_env=Path("/nonexistent/.runtime_env.json"),
        runtime_env_written=False,
        held=Action("buy", "NVDA", 20),
        first_day="2025-10-02",
        agent_output=first_order or "",
        tally=Tally(tool_errors=tool_errors, trades=trades),
        first_order=first_order,
    )


FAILED_SELL = f"2025-10-02 ERROR SELL NVDA 20: sell on trade: {NO_SIGNATURE}"
GOOD = "SUMMARY days=3 trades=6 rejected=0 tool_errors=0 positions={}"


def _supervised(alpha: str, exit_code: int = 0) -> Supervised:
    summaries = {"alpha": alpha, "beta": GOOD}
    return Supervised(days=3, models=["alpha", "beta"], summaries=summaries, exit_code=exit_code)


def test_the_verdict_needs_the_incident_before_and_a_clean_supervised_run_after() -> None:
    filled = "2025-10-02 SELL NVDA 20 @ 119.73 -> cash 9966.65"
    refused = "2025-10-02 ERROR SELL NVDA 20: sell on trade: connection refused"
    buy_first = f"2025-10-02 ERROR BUY AAPL 13: buy on trade: {NO_SIGNATURE}"
    cases = [
        (_old(FAILED_SELL, 2), _supervised(GOOD), True),
        # The old way did not fail, failed some other way, or failed on another order.
        (_old(filled, 0, trades=1), _supervised(GOOD), False),
        (_old(refused, 1), _supervised(GOOD), False),
        (_old(buy_first, 1), _supervised(GOOD), False),
        (_old(None, 0), _supervised(GOOD), False),
        # Supervise had a tool error, missed a day, lost a SUMMARY, or did not exit 0.
        (_old(FAILED_SELL, 2), _supervised(GOOD.replace("tool_errors=0", "tool_errors=1")), False),
        (_old(FAILED_SELL, 2), _supervised(GOOD.replace("days=3", "days=2")), False),
        (_old(FAILED_SELL, 2), _supervised(""), False),
        (_old(FAILED_SELL, 2), _supervised(GOOD, exit_code=1), False),
    ]
    for old, new, holds in cases:
        last = verdict(old, new)[-1]
        assert last.startswith("VERDICT: reproduced") is holds, (old.first_order, new.summaries)


def test_the_script_prints_the_before_and_after_verdict_and_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=child_env({}),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SCRIPT_SECONDS,
        check=False,
        start_new_session=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-3].startswith("BEFORE (the old way): the first sell failed as in the incident: ")
    assert lines[-3].endswith(NO_SIGNATURE)
    assert lines[-2].startswith("AFTER (under supervise): alpha days=3/3 tool_errors=0; beta")
    assert lines[-1] == "VERDICT: reproduced the incident, and supervise removes it"


def test_a_sigterm_to_the_script_mid_run_still_stops_every_process_it_started(
    tmp_path: Path,
) -> None:
    log = tmp_path / "script.log"
    with log.open("wb") as sink:
        script = subprocess.Popen(
            [sys.executable, "-u", str(SCRIPT)],
            env=child_env({}),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        while "supervise started, pid" not in log.read_text():
            assert script.poll() is None, log.read_text()
            assert time.monotonic() - started < START_SECONDS, (
                f"want 'supervise started', got after {START_SECONDS:g} s:\n{log.read_text()}"
            )
            time.sleep(POLL_SECONDS)

        os.kill(script.pid, signal.SIGTERM)

        assert script.wait(timeout=INTERRUPT_SECONDS) == 130, log.read_text()
        assert "every process started here was stopped" in log.read_text()
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    # The orphan net then fails this test if supervise, a unit or a server is still alive.
