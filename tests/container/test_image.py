"""The image's commands for real, without a Docker daemon: the build's ``RUN`` steps in a
fresh virtualenv on a copy of the build context, then the entrypoint as PID 1 of a PID
namespace as the image's non-root user, healthy by its own ``HEALTHCHECK``, stopped by
SIGTERM with exit 0. Also: what a plain ``pip install .`` brings, and that the services
are found in the checkout, not installed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.incident.children import free_port, poll
from scripts.incident.supervised import JsonLog
from supervisor import __version__
from tests.container.image import (
    Image,
    as_user,
    clean_env,
    image_env,
    only,
    parse_dockerfile,
    user_of,
)
from tests.container.namespace import as_pid_one, require_pid_namespaces
from tests.helpers import Run

# The four the supervisor needs (pyproject.toml says why, each); nothing of the MCP SDK's.
RUNTIME = {"anyio", "pydantic-settings", "h11", "watchfiles"}
REFERENCE_ONLY = {
    "mcp",
    "mcp-types",
    "uvicorn",
    "starlette",
    "sse-starlette",
    "httpx2",
    "httpcore2",
    "cryptography",
    "pyjwt",
    "jsonschema",
}
SIGNATURES = {"alpha": "gpt-4.1", "beta": "claude-sonnet-4"}
# The image's stack: both models' servers up, two trading days each, in seconds.
STACK_SECONDS = 120.0
# One attempt of the HEALTHCHECK command; its own urlopen gives up after 4 s.
CHECK_SECONDS = 10.0
# Builds a venv (~25 s) before the test's own work.
BUILD_TIMEOUT = 400


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    built = Image.build()
    try:
        yield built
    finally:
        built.remove()


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirement_name(requirement: str) -> str:
    """The project a ``Requires-Dist`` line names (``anyio>=4.14.1`` -> ``anyio``)."""
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert found is not None, requirement
    return canonical(found.group(0))


def dry_run(image: Image, requirement: str) -> list[dict[str, Any]]:
    """What ``pip install REQUIREMENT`` would install into an empty environment."""
    report = image.root / "report.json"
    pip = [str(image.python), "-m", "pip", "install", "--quiet", "--dry-run"]
    result = subprocess.run(
        [*pip, "--ignore-installed", "--report", str(report), requirement],
        cwd=image.root,
        env=clean_env({}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installs: list[dict[str, Any]] = json.loads(report.read_text())["install"]
    return installs


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_a_plain_install_brings_the_supervisors_four_dependencies_and_nothing_of_mcp(
    image: Image,
) -> None:
    installs = dry_run(image, str(image.workdir))

    names = {canonical(item["metadata"]["name"]) for item in installs}
    (project,) = [item for item in installs if item["metadata"]["name"] == "supervise"]
    requires: list[str] = project["metadata"].get("requires_dist", [])
    unconditional = {requirement_name(r) for r in requires if ";" not in r}
    reference = {requirement_name(r) for r in requires if r.endswith('extra == "reference"')}
    assert unconditional == RUNTIME
    assert reference == {"mcp"}
    assert names & REFERENCE_ONLY == set(), sorted(names)
    assert "supervise" in names
    assert len(names) <= 15, f"a plain install now brings {len(names)}: {sorted(names)}"


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_test_extra_takes_the_reference_extra_from_this_checkout_never_the_index(
    image: Image,
) -> None:
    # The index holds an unrelated project named "supervise": the self-reference must
    # resolve to this checkout.
    installs = dry_run(image, f"{image.workdir}[test]")

    projects = [item for item in installs if item["metadata"]["name"] == "supervise"]
    assert [p["download_info"]["url"] for p in projects] == [image.workdir.as_uri()]
    assert projects[0]["metadata"]["version"] == __version__
    names = {canonical(item["metadata"]["name"]) for item in installs}
    assert {"mcp", "pytest", "dockerfile"} <= names


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_image_installs_supervisor_only_and_finds_services_in_its_working_directory(
    image: Image,
) -> None:
    site = subprocess.run(
        [str(image.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    (record,) = Path(site).glob("supervise-*.dist-info/RECORD")
    files = [line.split(",")[0] for line in record.read_text().splitlines()]

    assert (Path(site) / "supervisor" / "__init__.py").is_file()
    assert not (Path(site) / "services").exists()
    assert [f for f in files if f.startswith(("services", "scripts", "tests"))] == []

    def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(image.python), "-c", code],
            cwd=cwd,
            env=image.run_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    elsewhere = python("import services", image.root)
    here = python(
        "import mcp, services.common.prices as p; print(p.DEFAULT_PRICE_FILE)", image.workdir
    )
    assert "ModuleNotFoundError: No module named 'services'" in elsewhere.stderr
    assert here.returncode == 0, here.stderr
    assert here.stdout.strip() == str(image.workdir / "services" / "data" / "merged.jsonl")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return 0


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_entrypoint_runs_the_stack_as_pid_1_non_root_healthy_and_exits_0_on_sigterm(
    image: Image,
) -> None:
    require_pid_namespaces()
    if not image.user_can_run:
        pytest.skip("no Python >= 3.11 on this machine that the image's non-root user may run")
    uid, gid = user_of(image.instructions)
    port = free_port()
    data = image.path(image_env(image.instructions)["DATA_DIR"])
    env = image.run_env(
        {
            # Tests listen on loopback only; the image's 0.0.0.0 is checked in the Dockerfile.
            "HTTP_HOST": "127.0.0.1",
            "PORT": str(port),
            "DATA_DIR": str(data),
            "DAYS": "2",
        }
    )
    user = as_user(uid, gid)
    # `docker run IMAGE --log-format json`: arguments after the image go to the ENTRYPOINT.
    argv = [*user, *only(image.instructions, "ENTRYPOINT").value, "--log-format", "json"]
    check = [*user, *only(image.instructions, "HEALTHCHECK").value[1:]]

    def healthcheck() -> int:
        return subprocess.run(
            check, env=env, capture_output=True, timeout=CHECK_SECONDS, check=False
        ).returncode

    with as_pid_one(argv, env, image.workdir, image.root / "run.log") as init:
        log = JsonLog(init.log)

        def healthy() -> tuple[bool | None, str]:
            code = healthcheck()
            if code == 0:
                return True, "exit 0"
            if init.unshare.poll() is not None:
                raise AssertionError(f"the entrypoint exited early:\n{init.output()[-3000:]}")
            return None, f"HEALTHCHECK exit {code}, /readyz {http_status(readyz)}"

        readyz = f"http://127.0.0.1:{port}/readyz"
        poll("the image's HEALTHCHECK to pass", healthy, STACK_SECONDS)
        running_as = Path(f"/proc/{init.pid}/status").read_text()
        namespace_pids = init.namespace_pids()

        def summaries() -> tuple[dict[str, str] | None, str]:
            found = {
                str(r["unit"]).removesuffix("/agent"): str(r["line"])
                for r in log.read()
                if str(r.get("unit", "")).endswith("/agent")
                and str(r.get("line", "")).startswith("SUMMARY")
            }
            return (found if set(found) == set(SIGNATURES) else None), f"SUMMARY of {found}"

        done = poll("a SUMMARY line from both agents", summaries, STACK_SECONDS)
        still_healthy = healthcheck()
        init.signal(signal.SIGTERM)
        code = init.wait()

    assert namespace_pids[-1] == 1
    assert f"\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n" in running_as
    for model, summary in done.items():
        assert summary.startswith("SUMMARY days=2 "), summary
        assert "tool_errors=0" in summary, summary
        ledger = data / "agent_data" / SIGNATURES[model] / "position" / "position.jsonl"
        assert ledger.stat().st_uid == uid
    # The agents are done and their servers serve on: the container stays healthy.
    assert still_healthy == 0
    assert code == 0, init.output()[-3000:]
    assert not (image.workdir / "data").exists()  # nothing written into the code's directory


def test_the_healthcheck_fails_when_nothing_listens_and_while_a_required_unit_is_not_ready(
    tmp_path: Path,
) -> None:
    command = list(only(parse_dockerfile(), "HEALTHCHECK").value[1:])
    python_first = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    port = free_port()

    def healthcheck() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": python_first, "PORT": str(port)}
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=CHECK_SECONDS, check=False
        )

    nothing = healthcheck()
    never_ready = free_port()  # nothing listens here: the unit's probe never passes
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        f'[supervise]\nhttp = "127.0.0.1:{port}"\n\n[processes.server]\n'
        f"command = {json.dumps([sys.executable, '-c', 'import signal; signal.pause()'])}\n"
        f'ready = {{ tcp = "127.0.0.1:{never_ready}", within = 300 }}\n'
    )
    run = Run(stack)
    try:
        readyz = f"http://127.0.0.1:{port}/readyz"

        def unready() -> tuple[int | None, str]:
            status = http_status(readyz)
            return (status if status == 503 else None), f"/readyz {status}"

        poll("/readyz answering 503", unready, 30.0)
        starting = healthcheck()
    finally:
        assert run.stop(timeout=30) == 0

    assert nothing.returncode == 1
    assert "Connection refused" in nothing.stderr
    assert starting.returncode == 1
    assert "HTTP Error 503" in starting.stderr
