"""``python -m services.math``: check the environment (standard library only), then serve.

Reads ``SIGNATURE`` (optional, shown by ``/healthz``) and ``--port N`` / ``PORT`` /
systemd's ``LISTEN_FDS``. Exits 78 with one stderr line when one is invalid.
"""

from __future__ import annotations

from services.common.settings import load_or_exit
from services.math.settings import SERVER, load_math


def main() -> None:
    settings = load_or_exit(load_math)
    # The heavy imports, only once the environment is known to be good.
    from services.common.serving import Identity, serve
    from services.math.tools import create_server

    serve(create_server(), Identity(SERVER, settings.signature), settings.listen)


if __name__ == "__main__":
    main()
