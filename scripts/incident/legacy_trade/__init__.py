"""The incident's trade server: AI-Trader's runtime-env file, read at every tool call.

A REPRODUCTION AID, NOT A SERVER TO RUN: ``python -m scripts.incident.legacy_trade``.
In the public AI-Trader project the tool servers start before any agent, and each tool
learns the model's identity by calling ``get_config_value("SIGNATURE")``, which reads a
JSON file at ``RUNTIME_ENV_PATH`` that the agent writes later, from another process. When
that file is missing (a platform wiped the disk) or lacks the key, the tool raises
"SIGNATURE environment variable is not set". This server does exactly that, with the same
message, around the reference ``TradeTools`` (``services.trade.tools``).

It is a separate entry point on purpose: the reference trade server
(``python -m services.trade``) has no switch into this behaviour. This ``__init__``
imports nothing, so the environment check in ``__main__`` runs before the MCP SDK loads.
"""
