"""``python -m services.trade``: check the environment (standard library only), then serve.

Reads ``SIGNATURE``, ``TODAY_DATE``, ``DATA_DIR`` (default ``./data``), ``PRICE_FILE``
(default: the bundled sample), and ``--port N`` / ``PORT`` / systemd's ``LISTEN_FDS``.
Exits 78 with one stderr line when any of them is missing or invalid. There is no other
mode: the incident's way of finding the identity later lives in ``scripts/incident``.
"""

from __future__ import annotations

from services.common.settings import load_or_exit
from services.trade.settings import SERVER, load_trade


def main() -> None:
    settings = load_or_exit(load_trade)
    # The heavy imports, only once the environment is known to be good.
    from services.common.serving import Identity, serve
    from services.trade.tools import create_server

    identity = Identity(SERVER, settings.signature, settings.today)
    serve(create_server(settings), identity, settings.listen, f", TODAY_DATE {settings.today}")


if __name__ == "__main__":
    main()
