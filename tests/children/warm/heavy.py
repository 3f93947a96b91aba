"""Stands in for an import-heavy module (the MCP SDK): importing it takes 0.6 s."""

import time

time.sleep(0.6)
LOADED_AT = time.monotonic()
