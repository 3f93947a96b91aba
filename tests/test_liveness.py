"""`live = {...}` after ready: a server that stops answering is restarted with the reason
"liveness: ...", and only it; heartbeat kinds (log lines, WATCHDOG=1) restart a unit that
falls silent; every attempt kind keeps a serving unit up. Real processes throughout."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import PY, SVC, Run, cli, wait_until, write_stack
from tests.http_port import get, health_base

HANG = f"""
[processes.math]
command = ["{PY}", "-m", "services.math"]
port = "auto"
stop_timeout = 1
ready = {{ mcp = "http://127.0.0.1:${{port}}/mcp" }}
live = {{ mcp = "http://127.0.0.1:${{port}}/mcp", interval = 0.2, timeout = 0.5, failures = 3 }}

[processes.other]
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
ready = {{ tcp = "${{port}}" }}
live = {{ tcp = "${{port}}", interval = 0.2, timeout = 0.5, failures = 3 }}
"""


def test_a_server_that_stops_answering_after_ready_is_restarted_by_liveness_and_only_it(
    tmp_path: Path,
) -> None:
    run = Run(write_stack(tmp_path, HANG))
    try:
        hung = int(run.event("math", "running", ready=True, timeout=60)["pid"])
        other = int(run.event("other", "running", ready=True)["pid"])
        os.kill(hung, signal.SIGSTOP)  # it still accepts (the kernel's backlog), never answers
        unready = run.wait_for(
            lambda r: r.get("unit") == "math" and r.get("event") == "running" and not r["ready"]
            and r.get("reason", "").startswith("liveness:"),
            "math no longer ready while liveness restarts it",
        )  # fmt: skip
        assert unready["pid"] == hung and unready["reason"].endswith("; restarting")
        backoff = run.event("math", "backoff")
        assert backoff["reason"].startswith(
            "liveness: mcp probe failed 3 times in a row (no answer within 0.5 s)"
        ), backoff
        for attempt in (1, 2, 3):
            run.line("supervise", f"math liveness: mcp probe failed ({attempt}/3)")
        back = run.wait_for(
            lambda r: r.get("unit") == "math" and r.get("ready") is True and r.get("pid") != hung,
            "math ready again with a new pid",
            timeout=60,
        )
        assert back["event"] == "running"
        status = cli("status", "other", "--json", "-c", str(run.stack))
        assert '"restarts": 0' in status.stdout and f'"pid": {other}' in status.stdout
        assert [r["event"] for r in run.events("other")] == ["starting", "running", "running"]
        why = cli("why", "math", "-c", str(run.stack)).stdout
        assert "after 1 restart(s)" in why and "Its mcp liveness probe passes." in why
    finally:
        assert run.stop() == 0


HEARTBEAT = f"""
[processes.beating]
command = ["{PY}", "-c", '''
import os, socket, sys, time
kind = sys.argv[1]
def beat(message):
    if kind == "log":
        print(message, flush=True)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.sendto(message.encode(), os.environ["NOTIFY_SOCKET"])
beat("READY=1")
for _ in range(5):
    beat("WATCHDOG=1")
    time.sleep(0.05)
time.sleep(3600)
''', "@KIND@"]
stop_timeout = 1
ready = @READY@
live = {{ @KIND@ = @LIVE@, interval = 0.4, failures = 2 }}
"""


@pytest.mark.parametrize(
    ("kind", "ready", "live", "silence"),
    [
        ("log", '{ log = "^READY=1" }', '"^WATCHDOG=1"', "no matching line for 0.4 s"),
        ("notify", "{ notify = true }", "true", "no WATCHDOG=1 for 0.4 s"),
    ],
)
def test_a_unit_whose_heartbeats_stop_is_restarted_by_liveness(
    tmp_path: Path, kind: str, ready: str, live: str, silence: str
) -> None:
    text = HEARTBEAT.replace("@KIND@", kind).replace("@READY@", ready).replace("@LIVE@", live)
    run = Run(write_stack(tmp_path, text))
    try:
        run.event("beating", "running", ready=True)
        backoff = run.event("beating", "backoff")
        assert backoff["reason"].startswith(
            f"liveness: {kind} probe failed 2 times in a row ({silence})"
        ), backoff
        run.event("beating", "running", ready=True, after=run.records.index(backoff))
    finally:
        assert run.stop() == 0


KINDS = f"""
[supervise]
http = "127.0.0.1:0"

[processes.viatcp]
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
ready = {{ tcp = "${{port}}" }}
live = {{ tcp = "${{port}}", interval = 0.05 }}

[processes.viahttp]
command = ["{PY}", "-m", "services.math"]
port = "auto"
ready = {{ http = "http://127.0.0.1:${{port}}/healthz" }}
live = {{ http = "http://127.0.0.1:${{port}}/healthz", interval = 0.05 }}

[processes.viaexec]
command = ["{PY}", "{SVC}"]
ready = {{ exec = "true" }}
live = {{ exec = ["{PY}", "-c", "pass"], interval = 0.05 }}

[processes.viamcp]
command = ["{PY}", "-m", "services.math"]
port = "auto"
ready = {{ mcp = "http://127.0.0.1:${{port}}/mcp" }}
live = {{ mcp = "http://127.0.0.1:${{port}}/mcp", interval = 0.05 }}
"""


def test_every_attempt_kind_keeps_a_serving_unit_up_and_times_its_attempts(
    tmp_path: Path,
) -> None:
    run = Run(write_stack(tmp_path, KINDS))
    units = {"viatcp": "tcp", "viahttp": "http", "viaexec": "exec", "viamcp": "mcp"}
    try:
        base = health_base(run)
        for unit in units:
            run.event(unit, "running", ready=True, timeout=60)

        def live_counts() -> dict[str, tuple[str, float]]:
            found = {}
            for family in text_string_to_metric_families(get(f"{base}/metrics")[2]):
                for sample in family.samples:
                    labels = sample.labels
                    if (
                        sample.name == "supervise_unit_probe_duration_seconds_count"
                        and labels["probe"] == "live"
                    ):
                        found[labels["unit"]] = (labels["kind"], sample.value)
            return found

        wait_until(
            lambda: len(live_counts()) == 4 and all(v >= 5 for _, v in live_counts().values()),
            "five passing liveness attempts of each unit",
        )
        assert {unit: kind for unit, (kind, _) in live_counts().items()} == units
        assert not [r for r in run.events() if r["event"] in ("backoff", "failed")]
        assert not [r for r in run.records if "liveness:" in r.get("line", "")]
    finally:
        assert run.stop() == 0
