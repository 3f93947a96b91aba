"""``python -m services.agent init|run|reset``: the reference agent's entry point.

``init`` reads ``BASE_MODEL`` / ``SIGNATURE``, ``MARKET``, ``INITIAL_CASH``,
``START_DATE``, ``DATA_DIR``, ``PRICE_FILE``, ``SUPERVISE_ENV``. ``run`` reads
``SIGNATURE``, ``TRADE_URL``, ``PRICE_URL``, ``MATH_URL``, ``DAYS``, ``TODAY_DATE``,
``DATA_DIR``, ``PRICE_FILE``, ``SUPERVISE_MODEL`` and ``SUPERVISE_SOCKET``.
A missing or invalid key: one stderr line ``agent: KEY ...`` and exit 78, before the MCP
SDK is imported. ``run`` exits 0 when no tool failed, else 1. ``reset [SIGNATURE...]``
reads ``DATA_DIR`` and removes ledgers there (``services.agent.reset``).
"""

from __future__ import annotations

import os
import sys

from services.agent.settings import AGENT, data_dir_from, load_init, load_run
from services.common.settings import ConfigError, fail, require

USAGE = "usage: python -m services.agent init|run|reset [SIGNATURE...]"


def _init() -> int:
    try:
        settings = load_init(os.environ)
    except ConfigError as exc:
        fail(exc)
    from services.agent.init import init
    from services.common.ledger import LedgerError

    try:
        init(settings, sys.stdout)
    except LedgerError as exc:
        # An unusable data directory is configuration: fail it the agreed way.
        fail(ConfigError(AGENT, "DATA_DIR", f"{str(settings.data_dir)!r}: {exc}"))
    return 0


def _run() -> int:
    try:
        settings = load_run(os.environ)
        model = require(AGENT, "SUPERVISE_MODEL", os.environ)
        require(AGENT, "SUPERVISE_SOCKET", os.environ)
    except ConfigError as exc:
        fail(exc)
    # The heavy imports (MCP client, anyio), only once the environment is known to be good.
    import anyio

    from services.agent.run import run, supervisor_date_setter

    tally = anyio.run(run, settings, supervisor_date_setter(model), sys.stdout)
    return 0 if tally.tool_errors == 0 else 1


def _reset(signatures: list[str]) -> int:
    from services.agent.reset import reset

    return reset(data_dir_from(os.environ), signatures, sys.stdout, sys.stderr)


def main(argv: list[str]) -> int:
    if argv == ["init"]:
        return _init()
    if argv == ["run"]:
        return _run()
    if argv[:1] == ["reset"]:
        return _reset(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
