"""The ledger's format, registration, torn-line handling and signature checks (in-process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.ledger import (
    Action,
    InvalidSignatureError,
    Ledger,
    NotRegisteredError,
    Proposal,
    Row,
    check_signature,
    parse_rows,
    position_file,
)


def buy_one(symbol: str, price: float) -> Callable[[Row], Proposal]:
    def decide(latest: Row) -> Proposal:
        positions = dict(latest.positions)
        positions[symbol] = positions.get(symbol, 0) + 1
        positions["CASH"] = float(positions["CASH"]) - price
        return Proposal(Action("buy", symbol, 1), positions)

    return decide


def test_ledger_lives_where_ai_trader_puts_it_and_starts_with_a_registration_row(
    data_dir: Path,
) -> None:
    ledger = Ledger(data_dir, "alpha-v1")
    assert ledger.register("2025-10-01", 10000, ["AAPL", "MSFT"]) is True

    assert ledger.path == data_dir / "agent_data" / "alpha-v1" / "position" / "position.jsonl"
    lines = ledger.path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"date": "2025-10-01", "id": 0, "positions": {"AAPL": 0, "MSFT": 0, "CASH": 10000.0}}
    ]


def test_registering_twice_leaves_the_first_registration_untouched(data_dir: Path) -> None:
    ledger = Ledger(data_dir, "alpha")
    assert ledger.register("2025-10-01", 10000, ["AAPL"]) is True
    assert ledger.register("2025-10-09", 99, ["MSFT"]) is False

    rows = ledger.rows()
    assert [(row.id, row.date, row.positions) for row in rows] == [
        (0, "2025-10-01", {"AAPL": 0, "CASH": 10000.0})
    ]
    assert sorted(p.name for p in ledger.path.parent.iterdir()) == ["position.jsonl"]


def test_a_trade_appends_the_next_id_with_this_action_in_ai_trader_shape(data_dir: Path) -> None:
    ledger = Ledger(data_dir, "alpha")
    ledger.register("2025-10-01", 1000, ["AAPL"])

    row = ledger.transact("2025-10-02", buy_one("AAPL", 100.0))

    assert isinstance(row, Row)
    assert json.loads(ledger.path.read_text().splitlines()[1]) == {
        "date": "2025-10-02",
        "id": 1,
        "this_action": {"action": "buy", "symbol": "AAPL", "amount": 1},
        "positions": {"AAPL": 1, "CASH": 900.0},
    }


def test_a_rejection_from_the_decision_is_returned_and_nothing_is_written(data_dir: Path) -> None:
    ledger = Ledger(data_dir, "alpha")
    ledger.register("2025-10-01", 1000, ["AAPL"])
    before = ledger.path.read_bytes()

    outcome = ledger.transact("2025-10-02", lambda latest: {"error": "no"})

    assert outcome == {"error": "no"}
    assert ledger.path.read_bytes() == before


def test_a_torn_last_line_is_skipped_and_the_next_append_lands_on_its_own_line(
    data_dir: Path,
) -> None:
    ledger = Ledger(data_dir, "alpha")
    ledger.register("2025-10-01", 1000, ["AAPL"])
    ledger.transact("2025-10-02", buy_one("AAPL", 100.0))
    torn = b'{"date": "2025-10-02", "id": 2, "this_action": {"action": "buy", "sym'
    with ledger.path.open("ab") as handle:
        handle.write(torn)

    assert [row.id for row in ledger.rows()] == [0, 1]
    assert ledger.latest().positions == {"AAPL": 1, "CASH": 900.0}

    row = ledger.transact("2025-10-02", buy_one("AAPL", 100.0))

    assert isinstance(row, Row)
    assert row.id == 2
    lines = ledger.path.read_bytes().split(b"\n")
    assert lines[2] == torn
    assert json.loads(lines[3])["id"] == 2
    assert lines[4] == b""
    assert [r.id for r in ledger.rows()] == [0, 1, 2]


def test_a_complete_looking_last_line_without_its_newline_counts_as_torn() -> None:
    whole = b'{"date": "d", "id": 0, "positions": {"CASH": 1.0}}\n'
    unterminated = b'{"date": "d", "id": 1, "positions": {}}'
    data = whole + unterminated

    assert [row.id for row in parse_rows(data)] == [0]


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"date": "d", "id": "1", "positions": {}}',
        b'{"date": "d", "id": 1, "positions": {"AAPL": "ten"}}',
        b'{"date": "d", "id": true, "positions": {}}',
        b'{"id": 1, "positions": {}}',
    ],
)
def test_unreadable_lines_are_skipped_not_fatal(line: bytes) -> None:
    good = b'{"date": "d", "id": 0, "positions": {"CASH": 1.0}}\n'

    assert [row.id for row in parse_rows(good + line + b"\n" + good)] == [0, 0]


@pytest.mark.parametrize(
    "signature",
    ["a/b", "..", ".", "../escape", "a\\b", "nul\x00byte", "", "x" * 65, "white space", "ä"],
)
def test_unsafe_signatures_are_rejected_naming_the_value_before_any_path_is_built(
    signature: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidSignatureError) as caught:
        position_file(tmp_path, signature)

    assert repr(signature) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidSignatureError):
        Ledger(tmp_path, signature)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signature", ["alpha", "gpt-4.1", "A_b.c-9", "x" * 64, "..."])
def test_safe_signatures_are_accepted(signature: str) -> None:
    assert check_signature(signature) == signature


def test_a_relative_data_directory_is_refused() -> None:
    with pytest.raises(ValueError, match="not an absolute path"):
        position_file(Path("data"), "alpha")


def test_trading_on_an_unregistered_signature_says_which_ledger_is_missing(
    data_dir: Path,
) -> None:
    ledger = Ledger(data_dir, "ghost")

    with pytest.raises(NotRegisteredError, match="ghost") as caught:
        ledger.transact("2025-10-02", buy_one("AAPL", 1.0))

    assert str(ledger.path) in str(caught.value)
