"""What repeated runs do with ``DATA_DIR``: they continue the ledger and say so; when no
trading day is left they say how to start over; ``python -m services.agent reset`` is
that way, and removes ledgers and nothing else."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import anyio

from services.agent.run import run
from services.agent.settings import RunSettings
from services.common.ledger import Action, Ledger, Proposal, Row
from services.common.prices import DEFAULT_PRICE_FILE, load_price_book
from tests.helpers import ROOT, Run
from tests.services.stack import free_port, run_module

PRICES = load_price_book(DEFAULT_PRICE_FILE)
FIRST_DAY, LAST_DAY = PRICES.trading_days[0], PRICES.trading_days[-1]
RESET_HINT = "to start over, stop the stack and run `python -m services.agent reset`"
# A whole run of the repository's stack over a short price file: seconds.
STACK_SECONDS = 90.0
SIGNATURES = {"alpha": "gpt-4.1", "beta": "claude-sonnet-4"}


def buy(ledger: Ledger, date: str, amount: int) -> None:
    def decide(latest: Row) -> Proposal:
        positions = dict(latest.positions)
        positions["AAPL"] = int(positions.get("AAPL", 0)) + amount
        return Proposal(Action("buy", "AAPL", amount), positions)

    ledger.transact(date, decide)


def test_a_second_init_continues_the_ledger_and_says_so_with_the_way_to_start_over(
    tmp_path: Path, data_dir: Path
) -> None:
    env = {"SIGNATURE": "alpha", "DATA_DIR": str(data_dir)}
    first = run_module("services.agent", env, tmp_path, args=("init",))
    buy(Ledger(data_dir, "alpha"), PRICES.trading_days[3], 1)

    second = run_module("services.agent", env, tmp_path, args=("init",))

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "registered alpha (us)" in first.stdout
    left = len(PRICES.trading_days) - 4
    assert (
        f"(latest row 1 on {PRICES.trading_days[3]}); continuing that ledger, {left} trading "
        f"day(s) left in the price file; {RESET_HINT}"
    ) in second.stdout
    assert f"TODAY_DATE={PRICES.trading_days[3]}\n" in second.stdout


def test_a_run_whose_ledger_reached_the_last_day_says_so_and_trades_nothing(
    data_dir: Path,
) -> None:
    ledger = Ledger(data_dir, "alpha")
    ledger.register(FIRST_DAY, 1000, PRICES.symbols)
    buy(ledger, LAST_DAY, 1)
    nobody = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens: it must not connect
    settings = RunSettings("alpha", nobody, nobody, nobody, 10, None, data_dir, PRICES)
    moved: list[str] = []

    async def set_date(day: str) -> None:
        moved.append(day)

    out = io.StringIO()
    tally = anyio.run(run, settings, set_date, out)

    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"agent: alpha has no trading day left after {LAST_DAY} in {DEFAULT_PRICE_FILE}: its "
        f"ledger {ledger.path} is at the end; {RESET_HINT}, or point DATA_DIR at an empty "
        "directory"
    )
    assert lines[1].startswith("SUMMARY days=0 trades=0 rejected=0 tool_errors=0 ")
    assert (tally.days, tally.tool_errors, moved) == (0, 0, [])
    assert len(ledger.rows()) == 2


def test_reset_removes_every_ledger_and_nothing_else_then_init_starts_from_day_one(
    tmp_path: Path, data_dir: Path
) -> None:
    alpha, beta = Ledger(data_dir, "alpha"), Ledger(data_dir, "beta")
    for ledger in (alpha, beta):
        ledger.register(FIRST_DAY, 1000, PRICES.symbols)
    buy(alpha, PRICES.trading_days[5], 2)
    keep = [data_dir / "notes.txt", data_dir / "agent_data" / "alpha" / "log" / "day.jsonl"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not a ledger\n")
    env = {"SIGNATURE": "alpha", "DATA_DIR": str(data_dir)}

    reset = run_module("services.agent", env, tmp_path, args=("reset",))
    left = sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob("*"))
    again = run_module("services.agent", env, tmp_path, args=("reset",))
    init = run_module("services.agent", env, tmp_path, args=("init",))

    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.splitlines() == [
        f"agent: reset alpha: removed {alpha.path} (2 row(s), the latest on "
        f"{PRICES.trading_days[5]})",
        f"agent: reset beta: removed {beta.path} (1 row(s), the latest on {FIRST_DAY})",
    ]
    assert all(path.read_text() == "not a ledger\n" for path in keep)
    assert left == [
        "agent_data",
        "agent_data/alpha",
        "agent_data/alpha/log",
        "agent_data/alpha/log/day.jsonl",
        "notes.txt",
    ]
    assert (again.returncode, again.stdout) == (
        0,
        f"agent: reset: no ledger under {data_dir}; nothing to remove\n",
    )
    assert init.returncode == 0, init.stderr
    assert "registered alpha (us) with 10000.00 cash on " + FIRST_DAY in init.stdout
    assert f"TODAY_DATE={FIRST_DAY}\n" in init.stdout
    assert len(alpha.rows()) == 1


def test_reset_of_named_signatures_removes_only_those_and_fails_on_one_it_cannot_find(
    tmp_path: Path, data_dir: Path
) -> None:
    alpha, beta = Ledger(data_dir, "alpha"), Ledger(data_dir, "beta")
    for ledger in (alpha, beta):
        ledger.register(FIRST_DAY, 1000, PRICES.symbols)
    args = ("reset", "alpha", "ghost", "../beta")

    result = run_module("services.agent", {"DATA_DIR": str(data_dir)}, tmp_path, args=args)

    assert result.returncode == 1
    assert (
        result.stdout
        == f"agent: reset alpha: removed {alpha.path} (1 row(s), the latest on {FIRST_DAY})\n"
    )
    ghost = Ledger(data_dir, "ghost").path
    assert result.stderr.splitlines() == [
        "agent: reset: '../beta' is not a signature (letters, digits and '._-', at most 64 "
        "characters, not '.' or '..')",
        f"agent: reset: no ledger for signature 'ghost': {ghost} does not exist",
    ]
    assert not alpha.path.exists()
    assert len(beta.rows()) == 1


def short_price_file(path: Path, days: int) -> Path:
    """The bundled prices cut to their first ``days`` trading days."""
    lines = []
    for line in DEFAULT_PRICE_FILE.read_text().splitlines():
        document = json.loads(line)
        series = document["Time Series (Daily)"]
        document["Time Series (Daily)"] = {d: series[d] for d in sorted(series)[:days]}
        lines.append(json.dumps(document))
    path.write_text("\n".join(lines) + "\n")
    return path


def summary_of(run: Run, model: str) -> str:
    record = run.wait_for(
        lambda r: r.get("unit") == f"{model}/agent" and r.get("line", "").startswith("SUMMARY"),
        f"{model}'s SUMMARY",
        timeout=STACK_SECONDS,
    )
    line: str = record["line"]
    return line


def run_stack_to_summaries(stack: Path, env: dict[str, str]) -> tuple[dict[str, str], Run]:
    """``supervise run`` until both agents printed SUMMARY, then SIGTERM; exit 0 asserted."""
    run = Run(stack, env=env)
    try:
        summaries = {model: summary_of(run, model) for model in SIGNATURES}
    finally:
        code = run.stop(timeout=STACK_SECONDS)
    assert code == 0, run.stderr
    return summaries, run


def test_repeated_runs_of_the_stack_continue_until_no_day_is_left_and_reset_starts_over(
    tmp_path: Path,
) -> None:
    stack = Path(shutil.copy(ROOT / "supervise.toml", tmp_path / "supervise.toml"))
    disk = tmp_path / "disk"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATA_DIR": str(disk),
        "PRICE_FILE": str(short_price_file(tmp_path / "three-days.jsonl", 3)),
        "HTTP_HOST": "127.0.0.1",
        "PORT": "0",
    }

    first, _ = run_stack_to_summaries(stack, env)
    second, again = run_stack_to_summaries(stack, env)
    reset = run_module("services.agent", {"DATA_DIR": str(disk)}, tmp_path, args=("reset",))
    third, _ = run_stack_to_summaries(stack, env)

    for model in SIGNATURES:
        assert first[model].startswith("SUMMARY days=2 "), first
        assert "tool_errors=0" in first[model]
        assert second[model].startswith("SUMMARY days=0 trades=0 rejected=0 tool_errors=0 ")
        assert any(RESET_HINT in line for line in again.lines(f"{model}/agent"))
        assert any(
            "continuing that ledger, 0 trading day(s) left" in line
            for line in again.lines(f"{model}/init")
        )
        assert third[model] == first[model]
    assert reset.returncode == 0, reset.stderr
    assert len(reset.stdout.splitlines()) == len(SIGNATURES)
