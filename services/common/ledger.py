"""The trading ledger: one append-only ``position.jsonl`` per signature, AI-Trader's format.

Layout (as AI-Trader's): ``DATA_DIR/agent_data/<SIGNATURE>/position/position.jsonl``.
Each line is one row ``{"date", "id", "this_action": {"action", "symbol", "amount"},
"positions": {SYM: qty, ..., "CASH": float}}``; row id 0 is the registration (no
``this_action``, every symbol at 0 and ``CASH`` the initial cash).

Invariants:
- A signature is checked (letters, digits, ``._-``, at most 64, not ``.``/``..``) before
  any path is built from it, so no signature can name a path outside its directory.
- Registration is atomic and happens once: the first row is written to a temporary file
  and hard-linked into place, so the ledger never exists empty or half-written.
- One critical section per trade: an exclusive ``flock`` on the ledger, held across
  read-latest → decide → append. The append is a single ``os.write`` of one whole line to
  an ``O_APPEND`` descriptor, then ``fsync``; ids therefore never repeat, whatever number
  of processes trade on one signature.
- A torn line (a crash mid-write: invalid JSON, or no trailing newline) is skipped on
  read, never fatal; the next append starts on a fresh line so it cannot be glued to it.
- A ledger is only ever removed whole (``Ledger.remove``, the agent's ``reset``), under
  its exclusive lock, so a trade in progress finishes first; nothing else deletes rows.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

SIGNATURE_RULE = "letters, digits and '._-', at most 64 characters, not '.' or '..'"
_SIGNATURE = re.compile(r"[A-Za-z0-9._-]{1,64}")

Positions = dict[str, int | float]


class InvalidSignatureError(ValueError):
    """A signature that could escape or mangle its ledger directory."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"invalid signature {value!r}: use {SIGNATURE_RULE}")


class LedgerError(Exception):
    """The ledger cannot be used (base class)."""


class NotRegisteredError(LedgerError):
    """No ledger file exists for the signature: its agent was never initialised here."""

    def __init__(self, signature: str, path: Path) -> None:
        self.signature = signature
        self.path = path
        super().__init__(f"no ledger for signature {signature!r}: {path} does not exist")


class EmptyLedgerError(LedgerError):
    """The ledger file exists but holds no readable row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"ledger {path} holds no readable row")


class LedgerIOError(LedgerError):
    """Reading, locking or appending failed at the OS level."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        super().__init__(f"ledger {path}: {exc.strerror or exc}")


def check_signature(value: str) -> str:
    """Return ``value`` if it is a safe signature.

    Raises:
        InvalidSignatureError: it is empty, too long, ``.``/``..``, or has another character.
    """
    if not _SIGNATURE.fullmatch(value) or value in {".", ".."}:
        raise InvalidSignatureError(value)
    return value


def agent_data(data_dir: Path) -> Path:
    """The directory holding every signature's ledger under ``data_dir``."""
    return data_dir / "agent_data"


def position_file(data_dir: Path, signature: str) -> Path:
    """The ledger path of ``signature`` under the absolute ``data_dir``.

    Raises:
        InvalidSignatureError: the signature is not safe (checked first).
        ValueError: ``data_dir`` is relative (it would move with the working directory).
    """
    check_signature(signature)
    if not data_dir.is_absolute():
        raise ValueError(f"data directory {str(data_dir)!r} is not an absolute path")
    return agent_data(data_dir) / signature / "position" / "position.jsonl"


@dataclass(frozen=True)
class Action:
    action: str  # "buy" | "sell"
    symbol: str
    amount: int


@dataclass(frozen=True)
class Row:
    """One ledger line; ``action`` is None on the registration row."""

    date: str
    id: int
    positions: Positions
    action: Action | None = None

    def to_line(self) -> bytes:
        document: dict[str, Any] = {"date": self.date, "id": self.id}
        if self.action is not None:
            document["this_action"] = {
                "action": self.action.action,
                "symbol": self.action.symbol,
                "amount": self.action.amount,
            }
        document["positions"] = self.positions
        return (json.dumps(document) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Proposal:
    """What a trade's decision wants appended: the action and the positions after it."""

    action: Action
    positions: Positions


def _is_quantity(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_row(line: bytes) -> Row | None:
    """A row, or None for a torn or foreign line (skipped, never fatal)."""
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    date, row_id, positions = document.get("date"), document.get("id"), document.get("positions")
    if not isinstance(date, str) or not isinstance(row_id, int) or isinstance(row_id, bool):
        return None
    if not isinstance(positions, dict) or not all(_is_quantity(v) for v in positions.values()):
        return None
    action = None
    raw = document.get("this_action")
    if isinstance(raw, dict):
        kind, symbol, amount = raw.get("action"), raw.get("symbol"), raw.get("amount")
        if isinstance(kind, str) and isinstance(symbol, str) and isinstance(amount, int):
            action = Action(kind, symbol, amount)
    return Row(date=date, id=row_id, positions=dict(positions), action=action)


def parse_rows(data: bytes) -> list[Row]:
    """Every readable row of a ledger's bytes, in file order.

    A last line without its newline is torn (its writer died mid-write), even if what
    is there happens to parse: it is skipped like any unreadable line.
    """
    lines = data.split(b"\n")
    # split leaves the bytes after the last newline as the final element: b"" when the
    # file ends cleanly, the torn fragment otherwise.
    complete = lines[:-1]
    return [row for row in (_parse_row(line) for line in complete if line.strip()) if row]


def _latest(rows: Iterable[Row]) -> Row | None:
    latest: Row | None = None
    for row in rows:
        if latest is None or row.id >= latest.id:
            latest = row
    return latest


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


T = TypeVar("T")


class Ledger:
    """The ledger of one signature under one absolute data directory."""

    def __init__(self, data_dir: Path, signature: str) -> None:
        self.signature = signature
        self.path = position_file(data_dir, signature)

    def __repr__(self) -> str:
        state = "registered" if self.path.exists() else "not registered"
        return f"<Ledger {self.signature} {state} at {self.path}>"

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotRegisteredError(self.signature, self.path) from None
        except OSError as exc:
            raise LedgerIOError(self.path, exc) from exc

    def register(self, date: str, cash: float, symbols: Iterable[str]) -> bool:
        """Create the ledger with its registration row (id 0), once.

        Returns:
            True if this call registered; False if the ledger already existed (untouched).

        Raises:
            LedgerIOError: the directory or file cannot be created.
        """
        positions: Positions = {symbol: 0 for symbol in symbols}
        positions["CASH"] = float(cash)
        line = Row(date=date, id=0, positions=positions).to_line()
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(f"short write of the registration row to {temporary}")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                # link() fails if the ledger exists: the one atomic create-with-content.
                os.link(temporary, self.path)
            except FileExistsError:
                return False
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return True
        except OSError as exc:
            raise LedgerIOError(self.path, exc) from exc
        finally:
            temporary.unlink(missing_ok=True)

    def rows(self) -> list[Row]:
        """Every readable row, in file order, read under a shared lock.

        Raises:
            NotRegisteredError: no ledger file.
            LedgerIOError: it cannot be read.
        """
        fd = self._open(os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return parse_rows(_read_all(fd))
        except OSError as exc:
            raise LedgerIOError(self.path, exc) from exc
        finally:
            os.close(fd)

    def latest(self) -> Row:
        """The row with the highest id.

        Raises:
            NotRegisteredError, EmptyLedgerError, LedgerIOError.
        """
        latest = _latest(self.rows())
        if latest is None:
            raise EmptyLedgerError(self.path)
        return latest

    def transact(self, date: str, decide: Callable[[Row], Proposal | T]) -> Row | T:
        """Run one trade's critical section.

        Under an exclusive lock: read the latest row, call ``decide`` with it, and if it
        returns a ``Proposal`` append it as the next row (one write, then fsync).

        Args:
            date: the trading date recorded on the new row.
            decide: pure function of the latest row; a ``Proposal`` to append, or any
                other value (a rejection) to hand back without writing.

        Returns:
            The appended row, or ``decide``'s non-proposal value.

        Raises:
            NotRegisteredError, EmptyLedgerError, LedgerIOError.
        """
        fd = self._open(os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = _read_all(fd)
            rows = parse_rows(data)
            latest = _latest(rows)
            if latest is None:
                raise EmptyLedgerError(self.path)
            outcome = decide(latest)
            if not isinstance(outcome, Proposal):
                return outcome
            row = Row(
                date=date,
                id=max(row.id for row in rows) + 1,
                positions=outcome.positions,
                action=outcome.action,
            )
            line = row.to_line()
            if data and not data.endswith(b"\n"):
                # A torn last line: start ours on a fresh line instead of gluing to it.
                line = b"\n" + line
            written = os.write(fd, line)
            if written != len(line):
                # Disk full or similar; readers skip the torn line, but the caller must know.
                raise LedgerIOError(self.path, OSError(f"short write ({written} of {len(line)})"))
            os.fsync(fd)
            return row
        except OSError as exc:
            raise LedgerIOError(self.path, exc) from exc
        finally:
            os.close(fd)

    def remove(self) -> list[Row]:
        """Delete the ledger, and its directories if that leaves them empty.

        Taken under the exclusive lock, so a trade already in its critical section ends
        first. Directories that hold anything else (AI-Trader keeps logs beside
        ``position/``) stay.

        Returns:
            The rows it held.

        Raises:
            NotRegisteredError: no ledger file.
            LedgerIOError: it cannot be locked or removed.
        """
        fd = self._open(os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            rows = parse_rows(_read_all(fd))
            self.path.unlink()
        except OSError as exc:
            raise LedgerIOError(self.path, exc) from exc
        finally:
            os.close(fd)
        for directory in (self.path.parent, self.path.parent.parent):
            try:
                directory.rmdir()
            except OSError:
                break  # not empty: something besides this ledger lives there
        return rows


def find_ledgers(data_dir: Path) -> list[Ledger]:
    """Every signature's ledger under the absolute ``data_dir``, by signature.

    Only ``agent_data/<SIGNATURE>/position/position.jsonl`` with a valid signature counts;
    anything else in the directory is none of the ledger's business.
    """
    root = agent_data(data_dir)
    found = []
    for candidate in sorted(root.glob("*/position/position.jsonl")):
        signature = candidate.parent.parent.name
        try:
            ledger = Ledger(data_dir, signature)
        except InvalidSignatureError:
            continue
        if ledger.path == candidate and candidate.is_file():
            found.append(ledger)
    return found


def cash_of(positions: Mapping[str, int | float]) -> float:
    return float(positions.get("CASH", 0.0))
