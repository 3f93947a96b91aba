"""`ready = { mcp = URL }`: the reference servers pass it and `status` shows their tools;
endpoints that listen but do not serve MCP never pass; a changed tool list is an event.
Parsing of JSON-RPC answers is table-driven; everything else runs real processes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from supervisor.client import Client
from supervisor.observe import ToolsEvent, tool_list
from supervisor.runtime.mcp import McpError, result_of, sse_messages
from tests.helpers import PY, ROOT, Run, cli, wait_until, write_stack

FAKE = str(ROOT / "tests" / "children" / "fakemcp.py")
MCP = '{ mcp = "http://127.0.0.1:${port}/mcp" }'


@pytest.mark.parametrize(
    ("content_type", "body", "want"),
    [
        ("application/json", '{"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}', {"a": 1}),
        (
            "application/json; charset=utf-8",
            '[{"jsonrpc": "2.0", "id": 7}, {"jsonrpc": "2.0", "id": 1, "result": {}}]',
            {},
        ),
        (
            "text/event-stream",
            ': ping\n\nevent: message\ndata: {"jsonrpc": "2.0", "id": 1,\ndata:  "result": {}}\n\n',
            {},
        ),
        ("application/json", '{"jsonrpc": "2.0", "id": 2, "result": {}}', "no JSON-RPC answer"),
        ("application/json", "<html>hello</html>", "no JSON-RPC answer to request 1 (<html>"),
        ("text/html", "<html>hello</html>", "unexpected content type 'text/html'"),
        (
            "application/json",
            '{"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}',
            "JSON-RPC error -32601: nope",
        ),
        ("application/json", '{"jsonrpc": "2.0", "id": 1, "result": [1]}', "not an object"),
        ("application/json", '{"jsonrpc": "1.0", "id": 1, "result": {}}', "no JSON-RPC answer"),
        ("", "", "unexpected content type 'none'"),
    ],
)
def test_a_json_rpc_result_is_read_only_from_a_well_formed_answer_to_our_request(
    content_type: str, body: str, want: dict[str, Any] | str
) -> None:
    if isinstance(want, dict):
        assert result_of("tools/list", content_type, body.encode(), 1) == want
    else:
        with pytest.raises(McpError, match=re.escape(want)):
            result_of("tools/list", content_type, body.encode(), 1)


@pytest.mark.parametrize(
    ("stream", "want"),
    [
        ("data: a\n\n", ["a"]),
        ("data: a\r\n\r\ndata: b\n\n", ["a", "b"]),
        ("data: a\ndata: b\n\n", ["a\nb"]),
        ("event: x\nid: 3\ndata:no-space\n\n", ["no-space"]),
        ("data: complete\n\ndata: unfinished", ["complete"]),
        (": a comment only\n\n", []),
    ],
)
def test_an_event_stream_gives_the_data_of_each_complete_event(
    stream: str, want: list[str]
) -> None:
    assert sse_messages(stream) == want


def test_a_tool_lists_hash_ignores_order_and_key_order_but_not_definitions() -> None:
    add = {"name": "add", "description": "adds", "inputSchema": {"type": "object"}}
    mul = {"inputSchema": {"type": "object"}, "name": "multiply", "description": "x"}
    one, two = tool_list([add, mul]), tool_list([mul, dict(reversed(add.items()))])
    assert one == two
    assert one.names == ("add", "multiply")
    assert re.fullmatch(r"[0-9a-f]{12}", one.digest)
    assert tool_list([add, {**mul, "description": "y"}]).digest != one.digest


def test_a_tool_list_event_says_what_was_added_removed_or_redefined() -> None:
    old = tool_list([{"name": "add"}, {"name": "sub"}])
    new = tool_list([{"name": "add"}, {"name": "div"}, {"name": "mul"}])
    assert ToolsEvent(0, "math", None, old).describe() == (
        f"math serves 2 MCP tool(s) (add, sub), hash {old.digest}"
    )
    assert ToolsEvent(0, "math", old, new).describe() == (
        f"math MCP tools changed: 2 -> 3 (+div +mul -sub), hash {old.digest} -> {new.digest}"
    )
    redefined = tool_list([{"name": "add", "description": "x"}, {"name": "sub"}])
    assert "(definitions changed)" in ToolsEvent(0, "math", old, redefined).describe()


REFERENCE = f"""
[models.alpha]
SIGNATURE = "alpha-v1"
TODAY_DATE = "2025-10-02"

[processes.math]
command = ["{PY}", "-m", "services.math"]
port = "auto"
ready = {MCP}

[processes.trade]
per_model = true
command = ["{PY}", "-m", "services.trade"]
port = "auto"
inject = ["SIGNATURE", "TODAY_DATE"]
ready = {MCP}

[processes.price]
per_model = true
command = ["{PY}", "-m", "services.price"]
port = "auto"
inject = ["SIGNATURE", "TODAY_DATE"]
ready = {MCP}
"""


def status_of(run: Run) -> dict[str, dict[str, Any]]:
    result = cli("status", "--json", "-c", str(run.stack))
    assert result.returncode == 0, result.stderr
    return {u["unit"]: u for u in json.loads(result.stdout)["units"]}


def test_the_reference_servers_pass_the_mcp_probe_and_status_shows_their_tools(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    run = Run(write_stack(tmp_path, REFERENCE), env={"DATA_DIR": str(tmp_path / "data")})
    try:
        for unit in ("math", "alpha/trade", "alpha/price"):
            run.event(unit, "running", ready=True, timeout=60)
        units = status_of(run)
        assert {name: units[name]["tools"] for name in units} == {
            "math": 2,
            "alpha/trade": 2,
            "alpha/price": 1,
        }
        for document in units.values():
            assert re.fullmatch(r"[0-9a-f]{12}", document["tools_hash"]), document
        event = run.wait_for(lambda r: r.get("event") == "tools" and r["unit"] == "math", "tools")
        assert event["names"] == ["add", "multiply"]
        assert event["tools_hash"] == units["math"]["tools_hash"]
        table = cli("status", "-c", str(run.stack)).stdout
        assert f"2 {units['alpha/trade']['tools_hash']}" in table
    finally:
        assert run.stop() == 0


FAKES = f"""
[processes.sse]
command = ["{PY}", "{FAKE}"]
env = {{ MODE = "sse" }}
port = "auto"
ready = {MCP}

[processes.stateful]
command = ["{PY}", "{FAKE}"]
env = {{ MODE = "stateful", TOOLS = "a,b,c" }}
port = "auto"
ready = {MCP}
live = {{ mcp = "http://127.0.0.1:${{port}}/mcp", interval = 0.05 }}
"""


def test_event_stream_and_session_servers_pass_and_every_session_is_ended(
    tmp_path: Path,
) -> None:
    run = Run(write_stack(tmp_path, FAKES))
    try:
        run.event("sse", "running", ready=True)
        run.event("stateful", "running", ready=True)
        units = status_of(run)
        assert (units["sse"]["tools"], units["stateful"]["tools"]) == (2, 3)
        # The readiness exchange and liveness pings each end the session they opened.
        wait_until(
            lambda: len([t for t in run.lines("stateful") if t.startswith("session ended")]) >= 3,
            "three sessions ended",
        )
        assert status_of(run)["stateful"]["live_failures"] == 0
    finally:
        assert run.stop() == 0


BROKEN = f"""
[processes.fine]
command = ["{PY}", "{FAKE}"]
port = "auto"
ready = {MCP}
"""
for mode in ("http500", "garbage", "rpcerror"):
    BROKEN += f"""
[processes.{mode}]
command = ["{PY}", "{FAKE}"]
env = {{ MODE = "{mode}" }}
port = "auto"
required = false
max_failures = 0
ready = {{ mcp = "http://127.0.0.1:${{port}}/mcp", within = 2 }}
"""

NOT_MCP = [
    ("http500", "mcp probe: initialize: HTTP 500 (Internal Server Error)"),
    ("garbage", "mcp probe: initialize: no JSON-RPC answer to request 1 (<html>hello</html>)"),
    ("rpcerror", "mcp probe: tools/list: JSON-RPC error -32603: boom"),
]


def test_an_endpoint_that_listens_but_does_not_serve_mcp_never_passes(tmp_path: Path) -> None:
    run = Run(write_stack(tmp_path, BROKEN))
    try:
        run.event("fine", "running", ready=True)
        for unit, why in NOT_MCP:
            failed = run.event(unit, "failed", timeout=60)
            assert why in failed["reason"], (unit, failed)
            assert "not ready within 2 s" in failed["reason"]
            assert not [r for r in run.events(unit) if r.get("ready")]
    finally:
        assert run.stop() == 0


CHANGING = f"""
[supervise]
coalesce = 0

[models.alpha]
TOOLS = "add,multiply"

[processes.tools]
per_model = true
command = ["{PY}", "{FAKE}"]
port = "auto"
inject = ["TOOLS"]
ready = {MCP}
"""


def test_a_restart_with_another_tool_list_is_an_event_with_both_hashes(tmp_path: Path) -> None:
    run = Run(write_stack(tmp_path, CHANGING))
    try:
        first = run.wait_for(lambda r: r.get("event") == "tools", "the first tool list")
        assert "previous_hash" not in first
        mark = len(run.records)
        stream = Client(str(tmp_path / ".supervise" / "control.sock")).events()
        again = cli("restart", "alpha/tools", "-c", str(run.stack))
        assert again.returncode == 0, again.stderr
        set_ = cli("set", "alpha", "TOOLS=add,multiply,divide", "-c", str(run.stack))
        assert set_.returncode == 0, set_.stderr
        changed = run.wait_for(
            lambda r: r.get("event") == "tools" and run.records.index(r) >= mark, "a new list"
        )
        # The restart with the same tools was no event; the set's restart was one.
        assert changed["names"] == ["add", "divide", "multiply"]
        assert changed["previous_hash"] == first["tools_hash"] != changed["tools_hash"]
        streamed = next(e for e in stream if e["state"] == "tools")  # also on /v1/events
        stream.close()
        assert (streamed["unit"], streamed["tools_hash"]) == ("alpha/tools", changed["tools_hash"])
    finally:
        assert run.stop() == 0
