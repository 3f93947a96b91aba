"""What the reference servers and the agent share: settings pieces, serving, ledger, prices.

Copying one server means taking its package (``services/trade``, ...) and this one.
Invariant: this ``__init__``, ``settings``, ``ledger`` and ``prices`` import only the
standard library, so a server checks its environment before it pays for the MCP SDK;
``serving`` imports the SDK and is imported only after that check.
"""
