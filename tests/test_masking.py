"""Secret values stay masked wherever a user can read them: a process's own `env`, the
public `/readyz`, lines printed before a key was rotated, `logs --grep`, and lines long
enough to be cut in pieces."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.helpers import PY, Run, cli, write_stack

SECRET = "ghp_processlevelsecret123"


def test_a_secret_in_a_process_own_env_is_masked_in_output_status_why_and_logs(
    tmp_path: Path,
) -> None:
    say = "import os, sys; print('using', os.environ['GITHUB_TOKEN']); sys.stdout.flush();"
    say += " print('auth failed for', os.environ['GITHUB_TOKEN'], file=sys.stderr); exit(78)"
    stack = write_stack(
        tmp_path,
        f"""
[supervise]
http = "127.0.0.1:0"
[processes.api]
command = ["{PY}", "-c", "{say}"]
env = {{ GITHUB_TOKEN = "{SECRET}" }}
required = false
[processes.steady]
command = ["sleep", "60"]
""",
    )
    run = Run(stack)
    try:
        failed = run.event("api", "failed")
        assert failed["reason"] == "auth failed for ***"
        assert "using ***" in run.lines("api")
        c = ("-c", str(stack))
        shown = [cli("status", *c), cli("why", "api", *c), cli("logs", "api", *c)]
        for result in shown:
            assert SECRET not in result.stdout + result.stderr
        assert "auth failed for ***" in shown[0].stdout
        assert "using ***" in shown[2].stdout
        assert SECRET not in json.dumps(run.records)
    finally:
        assert run.stop() == 0


def test_readyz_masks_a_failed_model_reason(tmp_path: Path) -> None:
    """The health port may face the internet; `/status` masked the reason, `/readyz` did
    not."""
    fail = 'if [ "$SUPERVISE_MODEL" = beta ]; then echo "invalid key: $API_KEY" >&2; exit 78; fi'
    stack = write_stack(
        tmp_path,
        f"""
[supervise]
http = "127.0.0.1:0"
[models.alpha]
API_KEY = "sk-alpha-0123456789abcdef"
[models.beta]
API_KEY = "sk-beta-ffffeeeeddddcccc"
[processes.trade]
per_model = true
shell = true
inject = ["API_KEY"]
command = '{fail}; exec sleep 60'
""",
    )
    run = Run(stack)
    try:
        run.event("alpha/trade", "running", ready=True)
        run.wait_for(lambda r: r.get("model") == "beta" and r["event"] == "failed", "beta")
        note = run.wait_for(lambda r: "health and status on" in r.get("line", ""), "health")
        url = note["line"].split(" on ")[1]
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "ready"
        assert body["failed_models"]["beta"] == "failed (beta/trade failed: invalid key: ***)"
        assert "sk-beta" not in json.dumps(body)
    finally:
        assert run.stop() == 0


def test_lines_printed_before_a_key_was_rotated_stay_masked_and_grep_sees_what_is_shown(
    tmp_path: Path,
) -> None:
    talk = "import os, time\nwhile True:\n    print('connecting with', os.environ['API_KEY'],"
    talk += " flush=True)\n    time.sleep(0.1)\n"
    script = tmp_path / "bot.py"
    script.write_text(talk)
    stack = write_stack(
        tmp_path,
        f"""
[models.alpha]
API_KEY = "sk-first-11112222"
[processes.bot]
per_model = true
command = ["{PY}", "{script}"]
inject = ["API_KEY"]
""",
    )
    run = Run(stack)
    try:
        run.event("alpha/bot", "running", ready=True)
        c = ("-c", str(stack))
        run.wait_for(lambda r: "connecting with" in r.get("line", ""), "a line")
        mark = len(run.records)
        assert cli("set", "alpha", "API_KEY=sk-second-33334444", *c).returncode == 0
        newer = run.event("alpha/bot", "running", ready=True, after=mark)["ts"]
        run.wait_for(lambda r: "connecting" in r.get("line", "") and r["ts"] > newer, "new key")
        logs = cli("logs", "alpha/bot", "-n", "500", "--no-events", *c).stdout
        assert logs.count("connecting with ***") >= 2
        assert "sk-first" not in logs and "sk-second" not in logs
        guessed = cli("logs", "alpha/bot", "--grep", "with sk-first-1111", *c)
        assert guessed.returncode == 0 and guessed.stdout == ""
        shown = cli("logs", "alpha/bot", "--grep", r"with \*\*\*$", "--no-events", *c)
        assert shown.stdout.count("connecting with ***") >= 2
    finally:
        assert run.stop() == 0


def test_a_long_line_is_cut_in_pieces_and_a_secret_across_a_cut_is_masked_whole(
    tmp_path: Path,
) -> None:
    key = "sk-live-0123456789abcdef"
    # One write: 16,370 bytes, then the key across the 16 KiB mark; then a 40,000-byte line.
    script = tmp_path / "emit.py"
    script.write_text(
        "import sys\n"
        f"sys.stdout.write('A' * 16370 + '{key}' + 'B' * 70000 + '\\n' + 'C' * 40000 + '\\n')\n"
    )
    stack = write_stack(
        tmp_path,
        f"""
[supervise]
log_dir = "logs"
[models.alpha]
API_KEY = "{key}"
[processes.emit]
per_model = true
oneshot = true
inject = ["API_KEY"]
command = ["{PY}", "{script}"]
""",
    )
    run = Run(stack)
    assert run.wait() == 0
    pieces = run.lines("alpha/emit")
    assert max(len(p) for p in pieces) <= 16 * 1024
    assert "".join(pieces) == "A" * 16370 + "***" + "B" * 70000 + "C" * 40000
    written = (tmp_path / "logs" / "alpha" / "emit.log").read_text()
    assert key not in written and "6789abcdef" not in written
    assert key[:12] not in json.dumps(run.records)
