"""The ``trade`` MCP server ("TradeTools"): ``buy`` and ``sell`` against the ledger.

Run ``python -m services.trade --port N``. This ``__init__`` imports nothing, so the
environment check in ``__main__`` runs before the MCP SDK is loaded.
"""
