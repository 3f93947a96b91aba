"""``python -m services.trade``: check the environment (standard library only), then serve.

Reads ``SIGNATURE``, ``TODAY_DATE``, ``DATA_DIR`` (default ``./data``), ``PRICE_FILE``
(default: the bundled sample), and ``--port N`` / ``PORT`` / systemd's ``LISTEN_FDS``.
Exits 78 with one stderr line when any of them is missing or invalid.

Legacy mode — a reproduction aid for the incident, NOT a recommended mode: when
``RUNTIME_ENV_PATH`` is set and ``SIGNATURE`` is not, the server starts anyway and, as
AI-Trader's tools do, reads ``SIGNATURE`` (and ``TODAY_DATE`` unless the environment
has it) from that JSON file at each tool call; a missing file or key fails the call with
"SIGNATURE environment variable is not set" (``services.trade.legacy``). It warns on
stderr at startup. Without ``RUNTIME_ENV_PATH`` a missing ``SIGNATURE`` still exits 78.
"""

from __future__ import annotations

import os
import sys

from services.settings import (
    RUNTIME_ENV_PATH,
    is_legacy_trade,
    load_or_exit,
    load_trade,
    load_trade_legacy,
)


def _serve_legacy() -> None:
    """The incident's way: start with no identity, look for it in a file at each call."""
    legacy = load_or_exit(load_trade_legacy)
    print(
        f"trade: LEGACY MODE (a reproduction aid, not for production): SIGNATURE is read from "
        f"{RUNTIME_ENV_PATH}={legacy.runtime_env} at each tool call; set SIGNATURE to serve "
        "normally",
        file=sys.stderr,
        flush=True,
    )
    # The heavy imports, only once the environment is known to be good.
    from services.serving import Identity, serve
    from services.trade.legacy import create_legacy_server
    from services.trade.tools import SERVER

    identity = Identity(SERVER, None, legacy.today)
    today = legacy.today or f"from {RUNTIME_ENV_PATH}"
    details = f", TODAY_DATE {today}, legacy {RUNTIME_ENV_PATH} {legacy.runtime_env}"
    serve(create_legacy_server(legacy), identity, legacy.listen, details)


def main() -> None:
    if is_legacy_trade(os.environ):
        _serve_legacy()
        return
    settings = load_or_exit(load_trade)
    # The heavy imports, only once the environment is known to be good.
    from services.serving import Identity, serve
    from services.trade.tools import SERVER, create_server

    identity = Identity(SERVER, settings.signature, settings.today)
    serve(create_server(settings), identity, settings.listen, f", TODAY_DATE {settings.today}")


if __name__ == "__main__":
    main()
