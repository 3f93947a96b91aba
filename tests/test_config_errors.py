"""Invalid stacks: `check` and `run` exit 2, name the culprit, and spawn nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Run, cli, pid_alive, write_stack

# A process that would prove something was spawned.
MARKER = """
[processes.marker]
command = ["python3", "-c", "open('spawned', 'w').close()"]
"""

INVALID = [
    ("unknown top-level key", "[bogus]\nx = 1\n", ["bogus", "unknown key"]),
    (
        "unknown process key",
        "[processes.web]\ncommand = 'true'\ncolour = 'red'\n",
        ["processes.web.colour", "unknown key"],
    ),
    (
        "bad restart policy",
        "[processes.web]\ncommand = 'true'\nrestart = 'sometimes'\n",
        ["processes.web.restart", "'sometimes'"],
    ),
    (
        "unknown dependency",
        "[processes.web]\ncommand = 'true'\ndepends_on = { db = 'ready' }\n",
        ["processes.web.depends_on.db", "unknown process 'db'"],
    ),
    (
        "dependency cycle",
        "[processes.a]\ncommand = 'true'\ndepends_on = { b = 'started' }\n"
        "[processes.b]\ncommand = 'true'\ndepends_on = { a = 'started' }\n",
        ["dependency cycle: a -> b -> a"],
    ),
    (
        "bad condition",
        "[processes.web]\ncommand = 'true'\ndepends_on = { marker = 'healthy' }\n",
        ["processes.web.depends_on.marker", "'healthy'"],
    ),
    ("model name with a path", '[models."../evil"]\nMARKET = "us"\n', ["models", "'../evil'"]),
    (
        "signature with a slash",
        '[models.alpha]\nSIGNATURE = "a/b"\n',
        ["models.alpha.SIGNATURE", "'a/b'"],
    ),
    ("signature dot-dot", '[models.alpha]\nSIGNATURE = ".."\n', ["SIGNATURE", "'..'"]),
    (
        "global depends on per-model",
        "[processes.a]\ncommand = 'true'\nper_model = true\n"
        "[processes.b]\ncommand = 'true'\ndepends_on = { a = 'started' }\n",
        ["processes.b.depends_on.a", "cannot depend on per-model process 'a'"],
    ),
    ("invalid TOML", "[processes.web\ncommand = 'true'\n", ["invalid TOML"]),
    (
        "unresolved variable",
        "[processes.web]\ncommand = 'echo ${NO_SUCH_VARIABLE_X}'\n",
        ["web", "command", "${NO_SUCH_VARIABLE_X}"],
    ),
    (
        "port of a portless sibling",
        "[processes.web]\ncommand = 'echo ${marker.port}'\n",
        ["web", "${marker.port}"],
    ),
    (
        "probe of two kinds",
        "[processes.web]\ncommand = 'true'\nport = 'auto'\n"
        "ready = { tcp = '${port}', log = 'x' }\n",
        ["processes.web.ready", "exactly one of tcp, http, exec, log, notify"],
    ),
    (
        "bad log regex",
        "[processes.web]\ncommand = 'true'\nready = { log = '(' }\n",
        ["processes.web.ready.log", "invalid regular expression"],
    ),
    (
        "log regex that backtracks exponentially",
        "[processes.web]\ncommand = 'true'\nready = { log = '^up (\\w+\\s?)+$' }\n",
        ["processes.web.ready.log", "'^up (\\w+\\s?)+$' repeats a repetition", "possessive"],
    ),
    (
        "missing command",
        "[processes.web]\nport = 'auto'\n",
        ["processes.web.command", "required key is missing"],
    ),
    (
        "unterminated reference",
        "[processes.web]\ncommand = 'echo ${oops'\n",
        ["processes.web.command", "unterminated"],
    ),
    (
        "an http probe's port out of range",
        "[processes.web]\ncommand = 'true'\nready = { http = 'http://127.0.0.1:99999/' }\n",
        ["processes.web.ready.http", "'http://127.0.0.1:99999/' is not a valid URL: Port out"],
    ),
    (
        "an http probe's broken IPv6 host",
        "[processes.web]\ncommand = 'true'\nlive = { http = 'http://[::1:${port}/' }\n",
        ["processes.web.live.http", "is not a valid URL: Invalid IPv6 URL"],
    ),
    (
        "a reference in a default",
        "[processes.web]\ncommand = 'true'\nenv = { DB = '${DB_URL:-${DEFAULT_DB}}' }\n",
        ["processes.web.env.DB", "a reference in the default of ${DB_URL:-…}"],
    ),
    (
        "completed on a service",
        "[processes.web]\ncommand = 'true'\ndepends_on = { marker = 'completed' }\n",
        ["processes.web.depends_on.marker", "'completed' needs a oneshot"],
    ),
    (
        "unknown stop signal",
        "[processes.web]\ncommand = 'true'\nstop_signal = 'SIGNOPE'\n",
        ["processes.web.stop_signal", "unknown signal 'SIGNOPE'"],
    ),
    (
        "inject on a global process",
        "[processes.web]\ncommand = 'true'\ninject = ['SIGNATURE']\n",
        ["processes.web.inject", "only per-model"],
    ),
    (
        "port out of range",
        "[processes.web]\ncommand = 'true'\nport = 70000\n",
        ["processes.web.port", "70000"],
    ),
    ("bad env key", "[env]\n1BAD = 'x'\n", ["env.1BAD"]),
    (
        "bad probe interval",
        "[processes.web]\ncommand = 'true'\nready = { log = 'x', interval = -1 }\n",
        ["processes.web.ready.interval", "-1"],
    ),
    ("missing env file", "[supervise]\nenv_files = ['nope.env']\n", ["env_files[0]", "nope.env"]),
]


@pytest.mark.parametrize(("case", "body", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_stack_is_refused_naming_the_culprit(
    tmp_path: Path, case: str, body: str, expected: list[str]
) -> None:
    (tmp_path / "supervise.toml").write_text(body + MARKER)
    for command in ("check", "run"):
        result = cli(command, "-c", "supervise.toml", cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "supervise.toml" in result.stderr
        for text in expected:
            assert text in result.stderr, (command, text, result.stderr)
    assert not (tmp_path / "spawned").exists()


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "supervise.toml").write_text(
        "[processes.web]\ncommand = 'true'\nrestart = 'sometimes'\ncolour = 1\n"
        "[processes.db]\ncommand = 'true'\nstop_timeout = 'soon'\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "3 error(s)" in result.stderr
    for where in ("processes.web.restart", "processes.web.colour", "processes.db.stop_timeout"):
        assert where in result.stderr


PROCFILE_INVALID = [
    (
        "line that is not a process",
        "web: python3 -m http.server\nthis is not a process\n",
        "line 2",
    ),
    ("duplicate name", "web: true\n# comment\nweb: false\n", "line 3: duplicate process name"),
]


@pytest.mark.parametrize(
    ("case", "body", "expected"), PROCFILE_INVALID, ids=[c[0] for c in PROCFILE_INVALID]
)
def test_invalid_procfile_names_the_line(
    tmp_path: Path, case: str, body: str, expected: str
) -> None:
    (tmp_path / "Procfile").write_text(body)
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "Procfile" in result.stderr and expected in result.stderr


def test_run_with_unknown_model_filter_spawns_nothing(tmp_path: Path) -> None:
    (tmp_path / "supervise.toml").write_text('[models.alpha]\nMARKET = "us"\n' + MARKER)
    result = cli("run", "--model", "gamma", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown model 'gamma'" in result.stderr
    assert not (tmp_path / "spawned").exists()


def test_check_prints_the_plan_with_secrets_redacted(tmp_path: Path) -> None:
    (tmp_path / "supervise.toml").write_text(
        '[models.alpha]\nSIGNATURE = "alpha-v1"\nAPI_KEY = "sk-very-secret"\n'
        "[processes.init]\nper_model = true\noneshot = true\ncommand = 'true'\n"
        "publishes = ['TODAY_DATE']\n"
        "[processes.trade]\nper_model = true\ncommand = 'sleep 1'\nport = 'auto'\n"
        "inject = ['SIGNATURE', 'API_KEY', 'TODAY_DATE', 'NEVER_SET']\n"
        "depends_on = { init = 'completed' }\n"
    )
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model alpha: start order init -> trade" in out
    assert "SIGNATURE=alpha-v1" in out
    assert "API_KEY=***" in out and "sk-very-secret" not in out
    assert "TODAY_DATE=<published by init>" in out
    assert "warning: alpha/trade needs alpha NEVER_SET" in out


# Strict types: pydantic's lax mode would take true as 1, "25" as 25 and "yes" as true.
WRONG_TYPES = [
    ("port = true", "processes.web.port", "must be 'auto' or an integer (got True)"),
    (
        "stop_timeout = true",
        "processes.web.stop_timeout",
        "Input should be a valid number (got True)",
    ),
    (
        "max_failures = true",
        "processes.web.max_failures",
        "Input should be a valid integer (got True)",
    ),
    ("oneshot = 'yes'", "processes.web.oneshot", "Input should be a valid boolean (got 'yes')"),
    ("port = '8080'", "processes.web.port", "must be 'auto' or an integer (got '8080')"),
    (
        "max_failures = 2.0",
        "processes.web.max_failures",
        "Input should be a valid integer (got 2.0)",
    ),
    (
        "ready = { log = 'x', interval = true }",
        "processes.web.ready.interval",
        "Input should be a valid number (got True)",
    ),
    (
        "ready = { notify = 1 }",
        "processes.web.ready.notify",
        "Input should be a valid boolean (got 1)",
    ),
    (
        "env = { DEBUG = true }",
        "processes.web.env.DEBUG",
        "Input should be a valid string (got True)",
    ),
]


@pytest.mark.parametrize(("line", "where", "message"), WRONG_TYPES, ids=[c[0] for c in WRONG_TYPES])
def test_a_value_of_the_wrong_type_is_refused_not_coerced(
    tmp_path: Path, line: str, where: str, message: str
) -> None:
    (tmp_path / "supervise.toml").write_text(f"[processes.web]\ncommand = 'true'\n{line}\n")
    result = cli("check", "-c", "supervise.toml", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"supervise.toml:3: {where}: {message}" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("line", "where", "message"),
    [
        ("shutdown_timeout = '25'", "supervise.shutdown_timeout", "valid number (got '25')"),
        ("shutdown_timeout = true", "supervise.shutdown_timeout", "valid number (got True)"),
        ("log_lines = '500'", "supervise.log_lines", "valid integer (got '500')"),
        ("log_max_size = true", "supervise.log_max_size", "valid integer (got True)"),
    ],
)
def test_a_setting_of_the_wrong_type_is_refused_not_coerced(
    tmp_path: Path, line: str, where: str, message: str
) -> None:
    (tmp_path / "supervise.toml").write_text(f"[supervise]\n{line}\n")
    result = cli("check", "-c", "supervise.toml", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"supervise.toml:2: {where}: Input should be a {message}" in result.stderr


def test_a_model_key_that_is_a_boolean_is_refused_like_an_env_value(tmp_path: Path) -> None:
    (tmp_path / "supervise.toml").write_text("[models.alpha]\nDRY_RUN = true\n")
    result = cli("check", "-c", "supervise.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "supervise.toml:2: models.alpha.DRY_RUN: Input should be a valid string (got True)" in (
        result.stderr
    )


def test_the_types_users_rely_on_still_pass(tmp_path: Path) -> None:
    # An integer for a float, a port number, a size with a unit, and numbers as
    # environment values and model keys (`PORT = 8080`, as docker compose and honcho take).
    (tmp_path / "supervise.toml").write_text(
        "[supervise]\nshutdown_timeout = 25\nlog_max_size = '10MiB'\n"
        "[env]\nPORT = 8080\nRATIO = 1.5\n"
        "[models.alpha]\nINITIAL_CASH = 10000\n"
        "[processes.web]\ncommand = 'true'\nport = 8080\nstop_timeout = 5\n"
        "start_seconds = 0\nmax_failures = 3\nready = { tcp = 8080, interval = 1 }\n"
    )
    result = cli("check", "-c", "supervise.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# overlap = true: the new instance shares the held socket with the old one, so a probe
# through that socket is answered by the old instance.
OVERLAP = """
[processes.web]
command = ["sh", "-c", "echo listening; exec sleep 60"]
port = "auto"
socket = true
overlap = true
"""
SHARED_PROBES = [
    ("tcp", "ready = { tcp = '${port}' }"),
    ("http", "ready = { http = 'http://127.0.0.1:${port}/healthz' }"),
    ("mcp", "ready = { mcp = 'http://127.0.0.1:${port}/mcp' }"),
]


@pytest.mark.parametrize(("kind", "ready"), SHARED_PROBES, ids=[c[0] for c in SHARED_PROBES])
def test_overlap_refuses_a_probe_the_old_instance_answers(
    tmp_path: Path, kind: str, ready: str
) -> None:
    (tmp_path / "supervise.toml").write_text(OVERLAP + ready + "\n" + MARKER)
    article = "a" if kind == "tcp" else "an"
    for command in ("check", "run"):
        result = cli(command, "-c", "supervise.toml", cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert (
            "supervise.toml:2: processes.web: overlap = true needs a readiness probe that "
            "only the new instance can pass (ready = { log = ... } or { notify = true }): "
            f"{article} {kind} probe on the held socket is answered by the instance it "
            "replaces"
        ) in result.stderr, result.stderr
    assert not (tmp_path / "spawned").exists()


@pytest.mark.parametrize(
    "ready",
    [
        "ready = { log = '^listening' }",
        "ready = { notify = true }",
        "ready = { exec = 'true' }",
        "",
    ],
    ids=["log", "notify", "exec", "none"],
)
def test_overlap_takes_a_probe_only_the_new_instance_passes(tmp_path: Path, ready: str) -> None:
    (tmp_path / "supervise.toml").write_text(OVERLAP + ready + "\n")
    result = cli("check", "-c", "supervise.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_tcp_probe_on_a_held_socket_without_overlap_is_still_allowed(tmp_path: Path) -> None:
    (tmp_path / "supervise.toml").write_text(
        OVERLAP.replace("overlap = true", "") + "ready = { tcp = '${port}' }\n"
    )
    result = cli("check", "-c", "supervise.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_reload_to_overlap_with_a_tcp_probe_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "supervise.toml"
    good = OVERLAP + "ready = { log = '^listening' }\n"
    path.write_text(good)
    run = Run(path)
    try:
        pid = run.event("web", "running", ready=True)["pid"]
        path.write_text(OVERLAP + "ready = { tcp = '${port}' }\n")
        result = cli("reload", "-c", str(path))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "processes.web: overlap = true needs a readiness probe" in result.stderr
        assert "a tcp probe on the held socket" in result.stderr
        assert pid_alive(pid)
        assert [r["event"] for r in run.events("web")].count("starting") == 1
    finally:
        assert run.stop() == 0


def test_an_unknown_model_on_the_command_line_names_the_stack_s_models(tmp_path: Path) -> None:
    path = write_stack(
        tmp_path,
        '[models.beta]\nSIGNATURE = "b"\n[models.alpha]\nSIGNATURE = "a"\n'
        "[processes.p]\ncommand = 'sleep 1'\nper_model = true\n",
    )
    result = cli("run", "--model", "nope", "-c", str(path))
    assert result.returncode == 2
    assert "--model: unknown model 'nope'; the stack has alpha, beta" in result.stderr
