"""Fixtures for the reference stack's tests (helpers live in ``tests.services.stack``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.stack import Servers


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """Start servers with ``servers.start(...)``; all are stopped at teardown."""
    fleet = Servers(tmp_path)
    try:
        yield fleet
    finally:
        fleet.stop_all()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
