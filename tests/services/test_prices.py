"""The bundled sample prices, their generator, and the price book's strictness."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from services.common.prices import DEFAULT_PRICE_FILE, PriceFileError, load_price_book
from services.data import generate


def test_the_bundled_price_file_is_exactly_what_the_seeded_generator_renders() -> None:
    assert DEFAULT_PRICE_FILE.read_bytes() == generate.render()
    assert generate.render() == generate.render()


def test_the_bundled_prices_are_six_symbols_over_thirty_weekdays_marked_synthetic() -> None:
    book = load_price_book(DEFAULT_PRICE_FILE)

    assert len(book.symbols) == 6
    assert len(book.trading_days) == 30
    assert all(dt.date.fromisoformat(day).weekday() < 5 for day in book.trading_days)
    for line in DEFAULT_PRICE_FILE.read_text().splitlines():
        document = json.loads(line)
        assert "SYNTHETIC" in document["Meta Data"]["1. Information"]
        bars = document["Time Series (Daily)"].values()
        assert {tuple(bar) for bar in bars} == {
            ("1. buy price", "2. high", "3. low", "4. sell price", "5. volume")
        }
        assert all(isinstance(value, str) for bar in bars for value in bar.values())


def test_every_bundled_bar_is_a_consistent_candle() -> None:
    book = load_price_book(DEFAULT_PRICE_FILE)
    for symbol in book.symbols:
        for day in book.trading_days:
            bar = book.bar(symbol, day)
            assert bar is not None
            low, high = float(bar.low), float(bar.high)
            assert low <= min(bar.open_price, bar.close_price) <= high
            assert low <= max(bar.open_price, bar.close_price) <= high


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json\n", ":1: not JSON"),
        ('{"Meta Data": {}}\n', "2. Symbol"),
        ('{"Meta Data": {"2. Symbol": "X"}}\n', "Time Series"),
        (
            '{"Meta Data": {"2. Symbol": "X"}, "Time Series (Daily)": {"2025-10-01": {}}}\n',
            "'1. buy price' missing",
        ),
        (
            '{"Meta Data": {"2. Symbol": "X"}, "Time Series (Daily)": {"01/10/2025": {}}}\n',
            "not a YYYY-MM-DD date",
        ),
        ("", "holds no symbols"),
    ],
)
def test_a_malformed_price_file_is_an_error_naming_file_line_and_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "merged.jsonl"
    path.write_text(content)

    with pytest.raises(PriceFileError) as caught:
        load_price_book(path)

    assert str(path) in str(caught.value)
    assert problem in str(caught.value)
