"""Each server and the agent refuse a bad environment at once: one stderr line, exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.stack import run_module

EX_CONFIG = 78
GOOD_DATE = "2025-10-02"
HEAVY = {"mcp", "mcp_types", "uvicorn", "starlette", "pydantic", "anyio", "httpx2"}


CASES = [
    ("trade", {"TODAY_DATE": GOOD_DATE}, "trade: SIGNATURE environment variable is not set"),
    # No switch into the incident's behaviour: a runtime-env file does not stand in for it.
    (
        "trade",
        {"RUNTIME_ENV_PATH": "runtime_env.json", "TODAY_DATE": GOOD_DATE},
        "trade: SIGNATURE environment variable is not set",
    ),
    ("trade", {"SIGNATURE": "a/b", "TODAY_DATE": GOOD_DATE}, "trade: SIGNATURE 'a/b' is invalid"),
    ("trade", {"SIGNATURE": "..", "TODAY_DATE": GOOD_DATE}, "trade: SIGNATURE '..' is invalid"),
    ("trade", {"SIGNATURE": "alpha"}, "trade: TODAY_DATE environment variable is not set"),
    (
        "trade",
        {"SIGNATURE": "alpha", "TODAY_DATE": "2025-02-30"},
        "trade: TODAY_DATE '2025-02-30' is not a date",
    ),
    (
        "trade",
        {"SIGNATURE": "alpha", "TODAY_DATE": GOOD_DATE, "DATA_DIR": "/nonexistent/data"},
        "trade: DATA_DIR '/nonexistent/data' does not exist",
    ),
    (
        "trade",
        {"SIGNATURE": "alpha", "TODAY_DATE": GOOD_DATE, "DATA_DIR": "."},
        "trade: PORT environment variable is not set",
    ),
    ("price", {}, "price: TODAY_DATE environment variable is not set"),
    (
        "price",
        {"TODAY_DATE": GOOD_DATE, "PRICE_FILE": "/nonexistent/merged.jsonl"},
        "price: PRICE_FILE /nonexistent/merged.jsonl: cannot be read",
    ),
    ("price", {"TODAY_DATE": GOOD_DATE, "PORT": "http"}, "price: PORT 'http' is not a port"),
    ("math", {"SIGNATURE": "bad sig", "PORT": "0"}, "math: SIGNATURE 'bad sig' is invalid"),
    ("math", {}, "math: PORT environment variable is not set"),
    ("agent", {}, "agent: BASE_MODEL environment variable is not set"),
    ("agent", {"BASE_MODEL": "///"}, "agent: BASE_MODEL '///' leaves no usable signature"),
    ("agent", {"SIGNATURE": "a", "MARKET": "eu"}, "agent: MARKET 'eu' is not one of us, cn"),
    ("agent", {"SIGNATURE": "a", "INITIAL_CASH": "-5"}, "agent: INITIAL_CASH '-5' is not a"),
    ("agent", {"SIGNATURE": "a", "DATA_DIR": "/proc/no"}, "agent: DATA_DIR '/proc/no'"),
]


@pytest.mark.parametrize(("server", "env", "message"), CASES)
def test_a_server_with_a_bad_environment_exits_78_with_one_line_naming_server_and_key(
    server: str, env: dict[str, str], message: str, tmp_path: Path
) -> None:
    args = ("init",) if server == "agent" else ()
    result = run_module(f"services.{server}", env, tmp_path, args=args)

    assert result.returncode == EX_CONFIG, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("server", ["trade", "price", "math"])
def test_a_server_refusing_its_environment_never_imported_the_mcp_sdk(
    server: str, tmp_path: Path
) -> None:
    flags = ("-X", "importtime")
    result = run_module(f"services.{server}", {"SIGNATURE": "a/b"}, tmp_path, flags=flags)

    assert result.returncode == EX_CONFIG
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    heavy = {name for name in imported if name.split(".")[0] in HEAVY}
    assert heavy == set()
    assert {f"services.{server}.settings", "services.common.settings"} <= imported


def test_the_agent_run_refuses_to_start_without_a_supervisor_socket(tmp_path: Path) -> None:
    env = {
        "SIGNATURE": "alpha",
        "TRADE_URL": "http://127.0.0.1:1/mcp",
        "PRICE_URL": "http://127.0.0.1:1/mcp",
        "MATH_URL": "http://127.0.0.1:1/mcp",
        "SUPERVISE_MODEL": "alpha",
    }
    result = run_module("services.agent", env, tmp_path, args=("run",))

    assert result.returncode == EX_CONFIG
    assert result.stderr == "agent: SUPERVISE_SOCKET environment variable is not set\n"
