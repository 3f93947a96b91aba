"""The repository's own stack under `supervise run`: real MCP servers, real agents, two
models, a fresh deploy as on Render, and a trade server killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from supervisor.client import Client
from tests.helpers import ROOT, Run, pid_alive, wait_until

SIGNATURES = {"alpha": "gpt-4.1", "beta": "claude-sonnet-4"}


def fresh_deploy(tmp_path: Path, days: int) -> tuple[Path, dict[str, str]]:
    """The stack file alone in an empty directory, an empty data disk: as after a deploy."""
    shutil.copy(ROOT / "supervise.toml", tmp_path / "supervise.toml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATA_DIR": str(tmp_path / "disk"),
        "DAYS": str(days),
        "PORT": str(port),
        "HTTP_HOST": "127.0.0.1",
    }
    return tmp_path / "supervise.toml", env


def ledger(tmp_path: Path, signature: str) -> list[dict[str, object]]:
    path = tmp_path / "disk" / "agent_data" / signature / "position" / "position.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(run: Run, model: str) -> str:
    record = run.wait_for(
        lambda r: r.get("unit") == f"{model}/agent" and r.get("line", "").startswith("SUMMARY"),
        f"{model} agent summary",
        timeout=120,
    )
    line: str = record["line"]
    return line


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return 0


def test_fresh_deploy_serves_both_models_with_zero_tool_errors_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    stack, env = fresh_deploy(tmp_path, days=4)
    run = Run(stack, env=env)
    readyz = f"http://127.0.0.1:{env['PORT']}/readyz"
    try:
        wait_until(lambda: http_status(readyz) == 200, "/readyz 200", timeout=90)
        for model in SIGNATURES:
            line = summary(run, model)
            assert "days=4" in line
            assert "tool_errors=0" in line
        for model, signature in SIGNATURES.items():
            rows = ledger(tmp_path, signature)
            assert [row["id"] for row in rows] == list(range(len(rows)))
            assert len(rows) > 1, f"{model} made no trade"
            decisions = [
                line for line in run.lines(f"{model}/agent") if " BUY " in line or " SELL " in line
            ]
            assert decisions
        dirs = {p.name for p in (tmp_path / "disk" / "agent_data").iterdir()}
        assert dirs == set(SIGNATURES.values())
        assert not [r for r in run.records if "ERROR" in r.get("line", "")]
        pids = [
            int(u["pid"])
            for u in Client(str(tmp_path / ".supervise" / "control.sock")).status()["units"]
            if u["pid"]
        ]
        assert pids
    finally:
        started = time.monotonic()
        code = run.stop(timeout=30)
        took = time.monotonic() - started
    assert code == 0, run.explain()
    assert took < 30  # Render's SIGKILL deadline: a contract, not a speed figure
    assert not [p for p in pids if pid_alive(p)]


def test_trade_server_killed_mid_run_is_restarted_and_the_ledger_stays_consistent(
    tmp_path: Path,
) -> None:
    stack, env = fresh_deploy(tmp_path, days=8)
    run = Run(stack, env=env)
    client = Client(str(tmp_path / ".supervise" / "control.sock"))
    try:
        run.wait_for(
            lambda r: (
                r.get("unit") == "alpha/agent"
                and (" BUY " in r.get("line", "") or " SELL " in r.get("line", ""))
            ),
            "alpha's first decision",
            timeout=90,
        )
        victim = int(client.status("alpha/trade")["pid"])
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (
                client.status("alpha/trade")["pid"] not in (None, victim)
                and client.status("alpha/trade")["ready"]
            ),
            "alpha/trade back",
            timeout=60,
        )
        line = summary(run, "alpha")
        assert "tool_errors=0" in line
        assert "days=8" in line
        rows = ledger(tmp_path, SIGNATURES["alpha"])
        assert [row["id"] for row in rows] == list(range(len(rows)))
        final = rows[-1]["positions"]
        assert isinstance(final, dict)
        assert all(float(v) >= 0 for v in final.values())
        assert summary(run, "beta")
    finally:
        assert run.stop(timeout=30) == 0


def test_the_virtualenvs_supervise_runs_the_stack_without_the_virtualenv_on_path(
    tmp_path: Path,
) -> None:
    """`.venv/bin/supervise run` from a fresh shell: the stack's `python -m ...` commands
    still find the interpreter that has the project installed."""
    stack, env = fresh_deploy(tmp_path, days=1)
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "supervise").exists()
    env["PATH"] = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != bin_dir
    )
    run = Run(stack, env=env, command=[str(bin_dir / "supervise")])
    readyz = f"http://127.0.0.1:{env['PORT']}/readyz"
    try:
        wait_until(lambda: http_status(readyz) == 200, "/readyz 200", timeout=90)
        assert "tool_errors=0" in summary(run, "alpha")
    finally:
        assert run.stop(timeout=30) == 0
