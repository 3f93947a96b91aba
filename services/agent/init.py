"""``agent init``: register the model's ledger once, then publish its runtime keys.

Publishing follows the supervisor's hand-off convention: ``KEY=VALUE`` lines appended to
the file named by ``SUPERVISE_ENV`` (read by the supervisor when this oneshot exits 0).
Without ``SUPERVISE_ENV`` the lines go to stdout, and stderr says so.

Invariants: registration is idempotent (an existing ledger is left untouched, and init
says it continues it and how to start over); the published ``TODAY_DATE`` never rewinds
a ledger that has already traded — it is the ledger's latest date, which for a fresh
ledger is the registration date (``START_DATE`` or the first trading day of the price
file). Standard library only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from services.agent.reset import HOW_TO_RESET
from services.agent.settings import AGENT, InitSettings
from services.common.ledger import Ledger


def publish(keys: Mapping[str, str], settings: InitSettings, out: TextIO) -> None:
    """Append ``KEY=VALUE`` lines to the hand-off file (or print them)."""
    lines = "".join(f"{key}={value}\n" for key, value in keys.items())
    if settings.supervise_env is None:
        print(f"{AGENT}: SUPERVISE_ENV is not set; printing the keys instead", file=sys.stderr)
        out.write(lines)
        out.flush()
        return
    # One write on an O_APPEND descriptor: the supervisor never reads half a key.
    fd = os.open(
        settings.supervise_env, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
    )
    try:
        os.write(fd, lines.encode("utf-8"))
    finally:
        os.close(fd)
    print(f"{AGENT}: published {', '.join(keys)} to {settings.supervise_env}", file=out)


def init(settings: InitSettings, out: TextIO) -> None:
    """Register (once) and publish ``SIGNATURE`` and ``TODAY_DATE``.

    Raises:
        services.common.ledger.LedgerError: the ledger cannot be created or read.
        OSError: the hand-off file cannot be written.
    """
    ledger = Ledger(settings.data_dir, settings.signature)
    if ledger.register(settings.start, settings.initial_cash, settings.prices.symbols):
        print(
            f"{AGENT}: registered {settings.signature} ({settings.market}) with "
            f"{settings.initial_cash:.2f} cash on {settings.start} at {ledger.path}",
            file=out,
        )
        today = settings.start
    else:
        latest = ledger.latest()
        left = len(settings.prices.days_after(latest.date))
        print(
            f"{AGENT}: {settings.signature} is already registered at {ledger.path} "
            f"(latest row {latest.id} on {latest.date}); continuing that ledger, "
            f"{left} trading day(s) left in the price file; {HOW_TO_RESET}",
            file=out,
        )
        today = latest.date
    publish({"SIGNATURE": settings.signature, "TODAY_DATE": today}, settings, out)
