"""The incident, reproduced: the old way fails the first ``sell``; ``supervise run`` does not.

Part 1, "the old way" (``old_way``; AI-Trader's start-up, as it went wrong on Render):
the persistent disk still holds the model's ledger with a holding bought the day before,
while the disk that held the runtime-env file was wiped by the restart. The trade, price
and math servers start all at once, before any agent exists — trade as the incident's
``legacy_trade`` server (this package), which looks for ``SIGNATURE`` in
``RUNTIME_ENV_PATH`` at each call. The agent's ``init`` then runs with no hand-off to
anyone (its keys end on its own stdout; nothing writes the file the servers read), and
the agent trades its first day: the rule sells the holding, the trade server cannot tell
who is selling, and the ``sell`` fails with "SIGNATURE environment variable is not set"
— a counted tool error, never a silent HOLD.

Part 2, "under supervise" (``supervised``): the repository's ``supervise.toml`` copied
alone into an empty directory, an empty ``DATA_DIR`` (a fresh deploy), ``python -m
supervisor run`` until both models' agents print their ``SUMMARY`` line, then SIGTERM as
Render sends it.

``main`` runs both and prints the verdict (``scripts/incident.py`` is its entry point);
``children`` starts and stops the processes (the reference stack's tests use it too);
``legacy_trade`` is the incident's trade server. Modules here are imported explicitly;
this file imports nothing. It all runs from a checkout of this repository.
"""
