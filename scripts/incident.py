"""The incident, reproduced: ``python scripts/incident.py`` (from the repository, venv python).

Part 1 starts the trade, price and math servers the old way — all at once, before any
agent, trade reading its identity from a runtime-env file that nobody wrote — and shows
the agent's first ``sell`` failing with "SIGNATURE environment variable is not set".
Part 2 runs the same agent under ``supervise run`` on the repository's supervise.toml
(a fresh deploy: empty DATA_DIR, DAYS=3) and shows both models completing every day with
zero tool errors. Exit 0 only when both hold; 1 when one does not; 2 when a step could
not be run. The logic lives in the package ``scripts/incident/`` (the tests reuse it).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.incident.main import main  # noqa: E402  (the path above must come first)

if __name__ == "__main__":
    sys.exit(main())
