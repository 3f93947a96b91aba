"""Errors that help: for each misconfiguration a user makes (often a habit from docker
compose, process-compose, supervisord or systemd), `supervise check` names the line and
the key and says what to write instead. Table-driven; every message asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.check import load_checked
from supervisor.errors import ConfigError

WEB = "[processes.web]\ncommand = 'true'\n"

# (what, stack text, the message, the line it names or None). A rule across keys names
# the line of its table.
# fmt: off
MISTAKES = [
    ("compose's environment", WEB + "environment = { A = '1' }\n", "processes.web.environment: unknown key (did you mean env?)", 3),
    ("compose's working_dir", WEB + "working_dir = '/srv'\n", "processes.web.working_dir: unknown key (did you mean cwd?)", 3),
    ("supervisord's directory", WEB + "directory = '/srv'\n", "unknown key (did you mean cwd?)", 3),
    ("supervisord's autorestart", WEB + "autorestart = true\n", "unknown key (did you mean restart?)", 3),
    ("supervisord's startsecs", WEB + "startsecs = 3\n", "unknown key (did you mean start_seconds?)", 3),
    ("supervisord's stopwaitsecs", WEB + "stopwaitsecs = 3\n", "(did you mean stop_timeout?)", 3),
    ("compose's healthcheck", WEB + "healthcheck = { tcp = '80' }\n", "(did you mean ready?)", 3),
    ("compose's stop_grace_period", WEB + "stop_grace_period = 5\n", "(did you mean stop_timeout?)", 3),
    ("a typo in a key", WEB + "comand = 'x'\n", "processes.web.comand: unknown key (did you mean command?)", 3),
    ("a typo in a probe key", WEB + "ready = { tcpp = '80' }\n", "processes.web.ready.tcpp: unknown key (did you mean tcp?)", 3),
    ("a typo in [supervise]", "[supervise]\nshutdown_timout = 5\n" + WEB, "supervise.shutdown_timout: unknown key (did you mean shutdown_timeout?)", 2),
    ("env_file in [supervise]", "[supervise]\nenv_file = ['.env']\n" + WEB, "(did you mean env_files?)", 2),
    ("env_file in a process", WEB + "env_file = '.env'\n", "(did you mean env_files (in [supervise])?)", 3),
    ("compose's unless-stopped", WEB + "restart = 'unless-stopped'\n", "(got 'unless-stopped') (did you mean always?)", 3),
    ("on_failure with an underscore", WEB + "restart = 'on_failure'\n", "(did you mean on-failure?)", 3),
    ("depends_on as a compose list", "[processes.db]\ncommand = 'x'\n" + WEB + "depends_on = ['db']\n", 'is a table of conditions, not a list: depends_on = { db = "started" }', 5),
    ("process-compose's process_healthy", "[processes.db]\ncommand = 'x'\n" + WEB + "depends_on = { db = 'process_healthy' }\n", "(did you mean ready?)", 5),
    ("compose's service_completed_successfully", "[processes.db]\ncommand = 'x'\noneshot = true\n" + WEB + "depends_on = { db = 'service_completed_successfully' }\n", "(did you mean completed?)", 6),
    ("command as a number", "[processes.web]\ncommand = 5\n", "processes.web.command: must be a string or a list of strings (got 5)", 2),
    ("port as a word", WEB + "port = 'http'\n", "processes.web.port: must be 'auto' or an integer (got 'http')", 3),
    ("port as a float", WEB + "port = 8080.0\n", "processes.web.port: must be 'auto' or an integer (got 8080.0)", 3),
    ("a signature with ..", "[models.a]\nX = '1'\nSIGNATURE = '../etc'\n" + WEB, "models.a.SIGNATURE: SIGNATURE '../etc' is invalid: ", 3),
    ("a model name with /", WEB + "[models.'a/b']\nX = '1'\n", "models.'a/b': model name 'a/b' is invalid: ", 3),
    ("a process name with .", WEB + "[processes.'w.x']\ncommand = 'x'\n", "processes.'w.x': process name 'w.x' is invalid: ", 3),
    ("a misspelt signal", WEB + "stop_signal = 'SIGTREM'\n", "unknown signal 'SIGTREM' (did you mean SIGTERM?)", 3),
    ("a signal that does not exist", WEB + "stop_signal = 'SIGFOO'\n", "unknown signal 'SIGFOO'", 3),
    ("oneshot restarted always", WEB + "oneshot = true\nrestart = 'always'\n", "restart = 'always' contradicts it", 1),
    ("a oneshot with a probe", WEB + "oneshot = true\nready = { tcp = '80' }\n", "a oneshot completes; it takes no ready probe", 1),
    ("two probe kinds", WEB + "ready = { tcp = '80', http = 'http://x/' }\n", "a probe needs exactly one of tcp, http, exec, log, notify, mcp (got tcp, http)", 3),
    ("an unbalanced quote", "[processes.web]\ncommand = 'echo \"hi'\n", "cannot split 'echo \"hi' like a shell: No closing quotation", 2),
    ("a socket without a port", WEB + "socket = true\n", "socket = true needs a port", 1),
    ("ready on a oneshot dependency", "[processes.db]\ncommand = 'x'\noneshot = true\n" + WEB + "depends_on = { db = 'ready' }\n", "a oneshot is never 'ready'; use 'completed' for 'db'", None),
    ("invalid TOML", "[processes.web\ncommand = 'x'\n", "invalid TOML: ", None),
]
# fmt: on


@pytest.mark.parametrize(
    ("what", "text", "message", "line"), MISTAKES, ids=[m[0] for m in MISTAKES]
)
def test_a_misconfiguration_is_explained(
    tmp_path: Path, what: str, text: str, message: str, line: int | None
) -> None:
    path = tmp_path / "supervise.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_checked(path, {})
    problems = [str(p) for p in info.value.problems]
    matching = [p for p in problems if message in p]
    assert matching, (what, problems)
    if line is not None:
        assert matching[0].startswith(f"{path}:{line}: "), (what, matching[0])


def test_each_union_error_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "supervise.toml"
    path.write_text("[processes.web]\ncommand = 5\nport = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_checked(path, {})
    assert len(info.value.problems) == 2  # not four: one per field


def test_check_warns_about_what_will_fail_at_start(tmp_path: Path) -> None:
    path = tmp_path / "supervise.toml"
    path.write_text(
        "[processes.web]\ncommand = 'no-such-program-xyz --x'\ncwd = 'missing'\n"
        "[processes.worker]\nper_model = true\ncommand = 'true'\n"
    )
    _, report = load_checked(path, {"PATH": "/usr/bin:/bin"})
    warnings = "\n".join(report.warnings)
    assert f"web: working directory '{tmp_path / 'missing'}' does not exist" in warnings
    assert "web: command 'no-such-program-xyz' is not found or not executable" in warnings
    assert "worker is per_model but the stack has no models" in warnings
