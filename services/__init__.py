"""The reference stack: real MCP tool servers, their ledger, and a rule-based agent.

``trade``, ``price`` and ``math`` are MCP servers (streamable HTTP, stateless, JSON
responses) with AI-Trader's tool names and result shapes, each with its own
``settings``; ``agent`` initialises a model (registers its ledger, publishes
``SIGNATURE`` and ``TODAY_DATE``) and trades over the bundled sample prices, moving
``TODAY_DATE`` through the supervisor's client each day; ``common`` is what they share.

This package is not installed (the ``supervise`` distribution holds ``supervisor`` only):
it runs from a checkout, found as the working directory of ``python -m services.<name>``
(a unit's ``cwd`` is the stack file's directory) or through an editable install; its
dependencies are the ``reference`` extra. The bundled data is read next to the code.

Invariant: this package and every server package's ``__init__`` import only the standard
library, so ``python -m services.<server>`` can check its environment and exit 78 before
it pays for the MCP SDK. Services know the supervisor only through ``supervisor.client``.
"""
