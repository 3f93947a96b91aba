"""The reference agent: ``python -m services.agent init`` then ``run`` (rule-based, no LLM).

``init`` registers the model's ledger and publishes ``SIGNATURE`` and ``TODAY_DATE``;
``run`` trades day by day over the price file through the model's MCP servers, moving
``TODAY_DATE`` through the supervisor's client. This ``__init__`` imports nothing.
"""
