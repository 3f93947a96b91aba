"""The legacy trade server's tools: the identity, and maybe the day, read at each call.

Like AI-Trader's ``_load_runtime_env``, a missing, unreadable or non-object file reads as
empty, and a missing ``SIGNATURE`` fails the call with "SIGNATURE environment variable is
not set" (the incident's words).

Invariants: the file is read afresh at each call and never written; a ``SIGNATURE`` from
the file is checked like one from the environment before any ledger path is built from
it; ``TODAY_DATE`` from the environment wins over the file's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from scripts.incident.legacy_trade.settings import RUNTIME_ENV_PATH, LegacyTradeSettings
from services.common.ledger import SIGNATURE_RULE, InvalidSignatureError, check_signature
from services.common.prices import is_date
from services.trade.settings import TradeSettings
from services.trade.tools import Trader, build_server

# The incident's words, as AI-Trader's tool_trade.py raises them.
NO_SIGNATURE = "SIGNATURE environment variable is not set"
NO_TODAY_DATE = "TODAY_DATE environment variable is not set"


def read_runtime_env(path: Path) -> dict[str, Any]:
    """The file's JSON object; ``{}`` when it is missing, unreadable or not an object."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _is_signature(value: str) -> bool:
    """Whether a ledger path may be built from ``value`` (the file is not trusted more)."""
    try:
        check_signature(value)
    except InvalidSignatureError:
        return False
    return True


def settings_for_call(legacy: LegacyTradeSettings) -> TradeSettings:
    """This call's settings, with the identity (and maybe the day) read from the file now.

    Raises:
        ToolError: the file is missing or has no ``SIGNATURE`` (the incident's message),
            or its ``SIGNATURE`` / ``TODAY_DATE`` is unusable.
    """
    runtime = read_runtime_env(legacy.runtime_env)
    signature = runtime.get("SIGNATURE")
    if signature is None or signature == "":
        raise ToolError(NO_SIGNATURE)
    where = f"{RUNTIME_ENV_PATH} {str(legacy.runtime_env)!r}"
    if not isinstance(signature, str) or not _is_signature(signature):
        raise ToolError(f"SIGNATURE {signature!r} from {where} is invalid: use {SIGNATURE_RULE}")
    today = legacy.today or runtime.get("TODAY_DATE")
    if today is None or today == "":
        raise ToolError(NO_TODAY_DATE)
    if not isinstance(today, str) or not is_date(today):
        raise ToolError(f"TODAY_DATE {today!r} from {where} is not a date written YYYY-MM-DD")
    return TradeSettings(
        listen=legacy.listen,
        signature=signature,
        today=today,
        data_dir=legacy.data_dir,
        prices=legacy.prices,
    )


def create_legacy_server(legacy: LegacyTradeSettings) -> MCPServer:
    """The "TradeTools" MCP server whose tools find out who is trading at each call."""
    return build_server(
        lambda: Trader(settings_for_call(legacy)),
        "Buy and sell stocks at the day's open for the model named in "
        f"{legacy.runtime_env}; results are the new positions, or {{'error': ...}} when "
        "the trade is refused.",
    )
