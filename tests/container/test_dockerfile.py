"""The Dockerfile and .dockerignore, read as Docker reads them (no daemon needed): the base,
the reference extra, a non-root user, ``supervise run`` as PID 1, the stop signal, the
health check and the data volume; and a build context with what the stack needs only."""

from __future__ import annotations

import re
import subprocess

from tests.container.image import (
    ROOT,
    context_files,
    ignore_patterns,
    image_env,
    is_ignored,
    only,
    parse_dockerfile,
)

INSTRUCTIONS = parse_dockerfile()
USER_ID = "10001"


def test_it_builds_from_python_311_slim_and_installs_the_project_with_the_reference_extra() -> None:
    assert only(INSTRUCTIONS, "FROM").value == ("python:3.11-slim",)
    assert only(INSTRUCTIONS, "WORKDIR").value == ("/app",)
    assert only(INSTRUCTIONS, "COPY").value == (".", ".")
    installs = [i for i in INSTRUCTIONS if i.cmd == "RUN" and "pip install" in i.text]
    assert [i.text.split(" && ")[0] for i in installs] == ["pip install '.[reference]'"]


def test_it_runs_as_a_non_root_user_that_owns_only_what_the_stack_writes() -> None:
    user = only(INSTRUCTIONS, "USER")
    runs = [i for i in INSTRUCTIONS if i.cmd == "RUN"]

    # Numeric, so Kubernetes' runAsNonRoot can check it; never uid 0.
    assert user.value == (f"{USER_ID}:{USER_ID}",)
    assert runs[0].text.startswith(f"useradd --uid {USER_ID} --user-group ")
    # Every RUN (the install) happens as root, before the switch; the program after it.
    assert max(i.line for i in runs) < user.line < only(INSTRUCTIONS, "ENTRYPOINT").line
    owned = [" ".join(i.text.split()) for i in runs if f"-o {USER_ID} -g {USER_ID}" in i.text]
    assert owned == [
        f"install -d -o {USER_ID} -g {USER_ID} -m 0700 /app/.supervise && "
        f"install -d -o {USER_ID} -g {USER_ID} -m 0755 /data"
    ]


def test_supervise_run_is_pid_1_in_exec_form_and_is_stopped_with_sigterm() -> None:
    entrypoint = only(INSTRUCTIONS, "ENTRYPOINT")

    assert entrypoint.exec_form  # no /bin/sh -c in between: supervise itself is PID 1
    assert entrypoint.value == ("supervise", "run")
    assert [i for i in INSTRUCTIONS if i.cmd == "CMD"] == []
    assert only(INSTRUCTIONS, "STOPSIGNAL").value == ("SIGTERM",)


def test_the_health_check_asks_readyz_with_the_images_python_in_exec_form() -> None:
    check = only(INSTRUCTIONS, "HEALTHCHECK")

    assert check.exec_form
    assert check.value[:4] == ("CMD", "python", "-I", "-c")
    assert "'http://127.0.0.1:%s/readyz' % os.environ['PORT']" in check.value[4]
    flags = dict(flag.removeprefix("--").split("=") for flag in check.flags)
    assert set(flags) == {"interval", "timeout", "start-period", "retries"}
    # The python inside must give up before Docker does, so it reports instead of hanging.
    assert "timeout=4" in check.value[4]
    assert flags["timeout"] == "5s"
    compile(check.value[4], "HEALTHCHECK", "exec")  # valid Python (it runs in test_image)


def test_the_health_port_listens_on_the_container_and_the_ledgers_are_a_volume() -> None:
    env = image_env(INSTRUCTIONS)

    assert env["HTTP_HOST"] == "0.0.0.0"
    assert only(INSTRUCTIONS, "EXPOSE").value == (env["PORT"],)
    assert only(INSTRUCTIONS, "VOLUME").value == (env["DATA_DIR"],)
    # The stack file reads exactly these for its health port and its ledgers.
    stack = (ROOT / "supervise.toml").read_text()
    assert 'http = "${HTTP_HOST:-127.0.0.1}:${PORT:-0}"' in stack
    assert 'DATA_DIR = "${DATA_DIR:-data}"' in stack


IGNORED = [
    ".git",
    ".venv/bin/python",
    ".supervise/control.sock",
    "data/agent_data/gpt-4.1/position/position.jsonl",
    ".env",
    "services/__pycache__/x.pyc",
    "__pycache__/x.pyc",
    "supervise.egg-info/PKG-INFO",
    "tests/test_run.py",
]
KEPT = [
    "pyproject.toml",
    "README.md",
    "supervise.toml",
    "supervisor/cli.py",
    "services/data/merged.jsonl",  # not the top-level data/ of a developer's runs
    "services/trade/__main__.py",
    "scripts/incident/legacy_trade/__main__.py",
]


def test_dockerignore_leaves_out_local_state_and_keeps_what_the_image_runs() -> None:
    patterns = ignore_patterns()

    assert [path for path in IGNORED if not is_ignored(path, patterns)] == []
    assert [path for path in KEPT if is_ignored(path, patterns)] == []
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    needed = [p for p in tracked if p.startswith(("supervisor/", "services/", "scripts/"))]
    context = {str(path.relative_to(ROOT)) for path in context_files()}
    assert [path for path in needed if path not in context] == []


def test_render_and_the_image_install_the_project_the_same_way_with_the_reference_extra() -> None:
    blueprint = (ROOT / "render.yaml").read_text()
    build = re.search(r'^\s*buildCommand:\s*"([^"]*)"', blueprint, re.M)
    start = re.search(r"^\s*startCommand:\s*(\S.*?)\s*$", blueprint, re.M)
    image_install = next(
        i.text.split(" && ")[0] for i in INSTRUCTIONS if i.cmd == "RUN" and "pip" in i.text
    )

    assert build is not None, blueprint
    assert build.group(1) == image_install == "pip install '.[reference]'"
    assert start is not None
    assert tuple(start.group(1).split()) == only(INSTRUCTIONS, "ENTRYPOINT").value
