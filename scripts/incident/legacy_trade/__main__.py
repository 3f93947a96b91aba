"""``python -m scripts.incident.legacy_trade``: the incident's trade server (see the package).

Checks its environment with the standard library first (exit 78 and one line on a
problem), warns on stderr that it is a reproduction aid, then serves ``TradeTools`` whose
every call looks for ``SIGNATURE`` in the ``RUNTIME_ENV_PATH`` file.
"""

from __future__ import annotations

import sys

from scripts.incident.legacy_trade.settings import (
    RUNTIME_ENV_PATH,
    SERVER,
    load_legacy_trade,
)
from services.common.settings import load_or_exit


def main() -> None:
    legacy = load_or_exit(load_legacy_trade)
    print(
        f"{SERVER}: LEGACY MODE (a reproduction aid, not for production): SIGNATURE is read "
        f"from {RUNTIME_ENV_PATH}={legacy.runtime_env} at each tool call; serve normally with "
        "python -m services.trade",
        file=sys.stderr,
        flush=True,
    )
    # The heavy imports, only once the environment is known to be good.
    from scripts.incident.legacy_trade.server import create_legacy_server
    from services.common.serving import Identity, serve

    identity = Identity(SERVER, None, legacy.today)
    today = legacy.today or f"from {RUNTIME_ENV_PATH}"
    details = f", TODAY_DATE {today}, {RUNTIME_ENV_PATH} {legacy.runtime_env}"
    serve(create_legacy_server(legacy), identity, legacy.listen, details)


if __name__ == "__main__":
    main()
