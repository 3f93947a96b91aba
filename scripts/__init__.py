"""Scripts run from the checkout (``python scripts/incident.py``); never installed."""
