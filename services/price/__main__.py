"""``python -m services.price``: check the environment (standard library only), then serve.

Reads ``TODAY_DATE``, ``PRICE_FILE`` (default: the bundled sample), ``SIGNATURE``
(optional, shown by ``/healthz``), and ``--port N`` / ``PORT`` / systemd's ``LISTEN_FDS``.
Exits 78 with one stderr line when any of them is missing or invalid.
"""

from __future__ import annotations

from services.common.settings import load_or_exit
from services.price.settings import SERVER, load_price


def main() -> None:
    settings = load_or_exit(load_price)
    # The heavy imports, only once the environment is known to be good.
    from services.common.serving import Identity, serve
    from services.price.tools import create_server

    identity = Identity(SERVER, settings.signature, settings.today)
    serve(create_server(settings), identity, settings.listen, f", TODAY_DATE {settings.today}")


if __name__ == "__main__":
    main()
