"""The reference stack: real MCP tool servers, their ledger, and a rule-based agent.

``trade``, ``price`` and ``math`` are MCP servers (streamable HTTP, stateless, JSON
responses) with AI-Trader's tool names and result shapes; ``agent`` initialises a model
(registers its ledger, publishes ``SIGNATURE`` and ``TODAY_DATE``) and trades over the
bundled sample prices, moving ``TODAY_DATE`` through the supervisor's client each day.
``incident`` reproduces the incident the project exists for (``scripts/incident.py``).

Invariant: this package and every server package's ``__init__`` import only the standard
library, so ``python -m services.<server>`` can check its environment and exit 78 before
it pays for the MCP SDK. Services know the supervisor only through ``supervisor.client``.
"""
