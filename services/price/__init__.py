"""The ``price`` MCP server ("LocalPrices"): ``get_price_local`` without look-ahead.

Run ``python -m services.price --port N``. This ``__init__`` imports nothing, so the
environment check in ``__main__`` runs before the MCP SDK is loaded.
"""
