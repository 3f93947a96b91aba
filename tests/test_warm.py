"""Warm starts (`preload`): units forked from a zygote, owned like any unit."""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.client import Client
from tests.helpers import PY, ROOT, Run, pid_alive, wait_until, write_stack


def warm_stack(out: Path, preload: bool) -> str:
    preload_line = 'preload = ["tests.children.warm.heavy"]' if preload else ""
    return f"""
[supervise]
coalesce = 0.0
[models.alpha]
SIGNATURE = "alpha-v1"
SECRET_TOKEN = "alpha-only-secret"
[models.beta]
SIGNATURE = "beta-v1"

[processes.server]
per_model = true
command = "{PY} -m tests.children.warm.server {out}"
cwd = "{ROOT}"
port = "auto"
inject = ["SIGNATURE"]
ready = {{ log = "^listening" }}
{preload_line}

[processes.alpha_only]
per_model = true
command = "{PY} -m tests.children.warm.server {out}"
cwd = "{ROOT}"
port = "auto"
inject = ["SIGNATURE", "SECRET_TOKEN"]
ready = {{ log = "^listening" }}
{preload_line}
"""


def read(out: Path, unit: str) -> dict[str, object]:
    path = out / f"{unit.replace('/', '@')}.json"
    wait_until(path.exists, f"{path.name}")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_warm_units_are_isolated_per_model_and_owned_by_the_supervisor(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    text = warm_stack(out, preload=True).replace(
        'SIGNATURE = "beta-v1"', 'SIGNATURE = "beta-v1"\nSECRET_TOKEN = "beta-secret-x"'
    )
    run = Run(write_stack(tmp_path, text))
    try:
        for unit in ("alpha/server", "beta/server", "alpha/alpha_only", "beta/alpha_only"):
            run.event(unit, "running", ready=True)
        alpha, beta = read(out, "alpha/server"), read(out, "beta/server")
        alpha_env = alpha["environ"]
        beta_env = beta["environ"]
        assert isinstance(alpha_env, dict) and isinstance(beta_env, dict)
        assert alpha_env["SIGNATURE"] == "alpha-v1"
        assert beta_env["SIGNATURE"] == "beta-v1"
        assert "SECRET_TOKEN" not in alpha_env and "SECRET_TOKEN" not in beta_env
        only = read(out, "alpha/alpha_only")["environ"]
        assert isinstance(only, dict)
        assert only["SECRET_TOKEN"] == "alpha-only-secret"
        beta_only = read(out, "beta/alpha_only")["environ"]
        assert isinstance(beta_only, dict)
        assert beta_only["SECRET_TOKEN"] == "beta-secret-x"
        # Forked from one zygote (not exec'd by the supervisor), each in its own session.
        assert alpha["ppid"] == beta["ppid"] != run.proc.pid
        assert alpha["sid"] == alpha["pid"]
        assert isinstance(alpha["argv"], list)
        assert alpha["argv"][1:] == [str(out)]
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        answer = client.set("alpha", {"SIGNATURE": "alpha-v2"})
        assert sorted(answer["restarted"]) == ["alpha/alpha_only", "alpha/server"]
        assert answer["failed"] == {}
        pids = [int(str(read(out, u)["pid"])) for u in ("beta/server",)]
        zygote = int(str(alpha["ppid"]))
    finally:
        run.kill()  # kill -9: the zygote and every warm unit must go too
    wait_until(
        lambda: not pid_alive(zygote) and not any(pid_alive(p) for p in pids),
        "zygote and warm units gone after kill -9 of the supervisor",
        timeout=10,
    )


def test_a_warm_unit_that_crashes_reports_its_exit_status(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.crash]
command = "{PY} -m tests.children.warm.server /nonexistent-dir"
cwd = "{ROOT}"
preload = ["tests.children.warm.heavy"]
restart = "never"
""",
    )
    run = Run(stack)
    failed = run.event("crash", "failed")
    assert run.pid("crash") not in (run.proc.pid,)
    assert failed["exit_code"] == 1
    assert any("FileNotFoundError" in line for line in run.lines("crash"))
    assert run.wait() == 1


def escaper_stack(out: Path) -> str:
    return f"""
[models.alpha]
MODE = "escape"
[processes.server]
per_model = true
command = "{PY} -m tests.children.moody"
cwd = "{ROOT}"
port = "auto"
inject = ["MODE"]
env = {{ OUT = "{out}" }}
ready = {{ log = "^listening" }}
preload = ["tests.children.warm.heavy"]
stop_timeout = 1
"""


def start_escaper(tmp_path: Path) -> tuple[Run, int, int]:
    out = tmp_path / "out"
    out.mkdir()
    run = Run(write_stack(tmp_path, escaper_stack(out)))
    run.event("alpha/server", "running", ready=True)
    path = out / "alpha@server.escaper"
    wait_until(path.exists, "the escaper's pid")
    escaper = int(path.read_text())
    assert pid_alive(escaper)
    return run, run.pid("alpha/server"), escaper


def test_a_warm_units_setsid_child_is_stopped_with_the_unit(tmp_path: Path) -> None:
    run, leader, escaper = start_escaper(tmp_path)
    try:
        client = Client(str(tmp_path / ".supervise" / "control.sock"))
        assert client.stop("alpha/server")["message"] == "alpha/server stopped"
        assert not pid_alive(escaper) and not pid_alive(leader)
    finally:
        assert run.stop() == 0


def test_a_warm_units_setsid_child_is_stopped_by_a_shutdown(tmp_path: Path) -> None:
    run, leader, escaper = start_escaper(tmp_path)
    assert run.stop() == 0
    assert not pid_alive(escaper) and not pid_alive(leader)


def test_a_warm_units_setsid_child_is_killed_by_the_guard_after_kill_9(tmp_path: Path) -> None:
    run, leader, escaper = start_escaper(tmp_path)
    marker = f"/proc/{escaper}/environ"
    entry = next(
        e for e in Path(marker).read_bytes().split(b"\0") if e.startswith(b"SUPERVISE_ENV=")
    )
    runtime_dir = Path(entry.decode().split("=", 1)[1]).parents[2]
    assert runtime_dir.name.startswith("supervise-") and runtime_dir.is_dir()
    run.kill()
    wait_until(lambda: not pid_alive(escaper) and not pid_alive(leader), "escaper gone", timeout=10)
    # The guard also removes the runtime directory: published keys do not outlive it.
    wait_until(lambda: not runtime_dir.exists(), "runtime directory removed", timeout=10)


def test_a_typo_in_preload_fails_the_unit_with_the_zygotes_last_words(tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        f"""
[processes.server]
command = "{PY} -m tests.children.warm.server {tmp_path}"
cwd = "{ROOT}"
preload = ["tests.children.warm.heavvy"]
""",
    )
    run = Run(stack)
    failed = run.event("server", "failed", timeout=20)
    # Noticed when the zygote died, not at its 60 s start timeout:
    assert "zygote for tests.children.warm.heavvy ended" in failed["reason"]
    assert "No module named 'tests.children.warm.heavvy'" in failed["reason"]
    assert "cannot import" in failed["reason"]  # the hint about the interpreter
    assert run.wait() == 1
