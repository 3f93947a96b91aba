"""The ``math`` MCP server ("Math"): ``add`` and ``multiply``.

Run ``python -m services.math --port N``. This ``__init__`` imports nothing, so the
environment check in ``__main__`` runs before the MCP SDK is loaded.
"""
