"""``agent reset``: start the reference stack over by removing ledgers under ``DATA_DIR``.

Runs continue their ledger: ``init`` keeps an existing one and ``run`` trades the days
after its latest row, so repeated ``supervise run`` walk on through the price file until
no day is left (on Render the persistent disk is what makes that survive a deploy). This
is the documented way back to day one; run it with the stack stopped.

``python -m services.agent reset`` removes every ledger under ``DATA_DIR`` (default
``./data``); ``reset SIGNATURE...`` only those. Each removal is one line on stdout with
what the ledger held. Exit 0, or 1 when a named signature has no ledger or one could not
be removed (the others are still removed). Standard library only.

Invariants: only ``agent_data/<SIGNATURE>/position/position.jsonl`` files are removed
(and their directories, when that leaves them empty) — nothing else in ``DATA_DIR``; a
named signature is checked before any path is built from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from services.agent.settings import AGENT
from services.common.ledger import (
    SIGNATURE_RULE,
    InvalidSignatureError,
    Ledger,
    LedgerError,
    find_ledgers,
)

# The line a run or init prints to say how to start over.
HOW_TO_RESET = (
    "to start over, stop the stack and run `python -m services.agent reset`, "
    "or point DATA_DIR at an empty directory"
)


def _describe(ledger: Ledger, rows: int, latest: str | None) -> str:
    last = f", the latest on {latest}" if latest else ""
    return f"{AGENT}: reset {ledger.signature}: removed {ledger.path} ({rows} row(s){last})"


def reset(data_dir: Path, signatures: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Remove the ledgers of ``signatures`` (all when empty) under ``data_dir``.

    Returns:
        The exit status: 0, or 1 when a named ledger is missing or could not be removed.
    """
    status = 0
    if signatures:
        ledgers = []
        for signature in signatures:
            try:
                ledgers.append(Ledger(data_dir, signature))
            except InvalidSignatureError:
                print(
                    f"{AGENT}: reset: {signature!r} is not a signature ({SIGNATURE_RULE})", file=err
                )
                status = 1
    else:
        ledgers = find_ledgers(data_dir)
        if not ledgers:
            print(f"{AGENT}: reset: no ledger under {data_dir}; nothing to remove", file=out)
    for ledger in ledgers:
        try:
            rows = ledger.remove()
        except LedgerError as exc:
            print(f"{AGENT}: reset: {exc}", file=err)
            status = 1
            continue
        latest = max(rows, key=lambda row: row.id).date if rows else None
        print(_describe(ledger, len(rows), latest), file=out)
    return status
