"""``python -m services.math``: check the environment (standard library only), then serve.

Reads ``SIGNATURE`` (optional, shown by ``/healthz``) and ``--port N`` / ``PORT`` /
systemd's ``LISTEN_FDS``. Exits 78 with one stderr line when one is invalid.
"""

from __future__ import annotations

from services.settings import load_math, load_or_exit


def main() -> None:
    settings = load_or_exit(load_math)
    # The heavy imports, only once the environment is known to be good.
    from services.math.tools import SERVER, create_server
    from services.serving import Identity, serve

    serve(create_server(), Identity(SERVER, settings.signature), settings.listen)


if __name__ == "__main__":
    main()
