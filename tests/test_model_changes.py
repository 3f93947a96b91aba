"""A model's keys changed as a user changes them: a `set` whose oneshot publishes anew
stays one transaction, a short `--timeout` never fails a model by its rollback, a model
launched through the API survives the file adopting and forgetting it, and an API
override of SIGNATURE can be unset."""

from __future__ import annotations

from pathlib import Path

from supervisor.client import Client
from tests.helpers import Run, cli, wait_until, write_stack


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def client_of(stack: Path) -> Client:
    return Client(str(stack.parent / ".supervise" / "control.sock"))


def ready_pid(client: Client, unit: str) -> int | None:
    """The pid of `unit` if it is running and ready."""
    status = client.status(unit)
    return int(status["pid"]) if status["state"] == "running" and status["ready"] else None


def model_state(client: Client, model: str) -> str:
    return str(client.status()["models"][model]["state"])


REFUSE_EU = "if [ $SIGNATURE = eu-sig ]; then echo 'srv: eu not supported' >&2; exit 78; fi"
PUBLISHING = f"""
[models.alpha]
MARKET = "us"
[processes.init]
per_model = true
oneshot = true
shell = true
inject = ["MARKET"]
command = "sleep 0.3; echo SIGNATURE=$MARKET-sig >> $SUPERVISE_ENV"
publishes = ["SIGNATURE"]
[processes.srv]
per_model = true
shell = true
command = "{REFUSE_EU}; exec sleep 60"
inject = ["SIGNATURE"]
depends_on = {{ init = "completed" }}
"""


def test_a_set_whose_oneshot_publishes_a_key_that_breaks_a_server_is_rolled_back(
    tmp_path: Path,
) -> None:
    """The reference stack's pattern: init publishes SIGNATURE, the servers inject it.
    The `set` answered "changed" (exit 0) as soon as init ran again; the server then
    failed on the new SIGNATURE outside the change, and its model with it."""
    stack = write_stack(tmp_path, PUBLISHING)
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        result = cli("set", "alpha", "MARKET=eu", "-c", str(stack))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "rolled back: alpha/srv failed: srv: eu not supported" in result.stdout
        client = client_of(stack)
        keys = client.status()["models"]["alpha"]
        assert keys["state"] == "running"
        assert keys["keys"]["MARKET"] == "us" and keys["keys"]["SIGNATURE"] == "us-sig"
        pid = wait_until(lambda: ready_pid(client, "alpha/srv"), "alpha/srv back, ready")
        assert environ_of(pid)["SIGNATURE"] == "us-sig"
    finally:
        assert run.stop() == 0


def test_a_set_whose_oneshot_publishes_a_key_waits_for_the_servers_it_restarts(
    tmp_path: Path,
) -> None:
    stack = write_stack(tmp_path, PUBLISHING.replace("eu-sig", "never-sig"))
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        result = cli("set", "alpha", "MARKET=eu", "-c", str(stack))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "alpha/srv" in result.stdout  # restarted by the change, and waited for
        pid = ready_pid(client_of(stack), "alpha/srv")
        assert pid is not None
        assert environ_of(pid)["SIGNATURE"] == "eu-sig"
    finally:
        assert run.stop() == 0


def test_a_set_with_a_timeout_shorter_than_the_start_is_rolled_back_without_failing_the_model(
    tmp_path: Path,
) -> None:
    stack = write_stack(
        tmp_path,
        """
[models.alpha]
DAY = "1"
[models.beta]
DAY = "1"
[processes.srv]
per_model = true
shell = true
command = "sleep 1.5; echo READY; exec sleep 60"
inject = ["DAY"]
ready = { log = "READY" }
""",
    )
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        result = cli("set", "alpha", "DAY=2", "--timeout", "0.5", "-c", str(stack))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "rolled back: alpha/srv not ready within 0.5 s" in result.stdout
        assert "failed too" not in result.stdout
        client = client_of(stack)

        wait_until(
            lambda: ready_pid(client, "alpha/srv") and model_state(client, "alpha") == "running",
            "alpha/srv ready on DAY=1, model alpha running",
        )
        assert client.status()["models"]["alpha"]["keys"]["DAY"] == "1"
    finally:
        assert run.stop() == 0


def test_a_model_launched_through_the_api_survives_the_file_adopting_then_forgetting_it(
    tmp_path: Path,
) -> None:
    base = """
[models.alpha]
DAY = "1"
[processes.srv]
per_model = true
command = "sleep 60"
inject = ["DAY"]
"""
    stack = write_stack(tmp_path, base)
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        c = ("-c", str(stack))
        assert cli("launch", "gamma", "DAY=api", *c).returncode == 0
        stack.write_text(base + '[models.gamma]\nDAY = "file"\n')
        assert cli("reload", *c).returncode == 0
        stack.write_text(base)
        assert cli("reload", *c).returncode == 0
        client = client_of(stack)
        pid = ready_pid(client, "gamma/srv")
        assert pid is not None
        assert client.status()["models"]["gamma"]["keys"]["DAY"] == "api"
        assert environ_of(pid)["DAY"] == "api"
    finally:
        assert run.stop() == 0


def test_an_api_override_of_signature_can_be_unset(tmp_path: Path) -> None:
    """`--unset SIGNATURE` was checked as SIGNATURE='' and refused (exit 2)."""
    stack = write_stack(
        tmp_path,
        """
[models.alpha]
SIGNATURE = "alpha-v1"
[processes.srv]
per_model = true
command = "sleep 60"
inject = ["SIGNATURE"]
""",
    )
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        c = ("-c", str(stack))
        assert cli("set", "alpha", "SIGNATURE=override", *c).returncode == 0
        result = cli("set", "alpha", "--unset", "SIGNATURE", *c)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "changed: SIGNATURE" in result.stdout
        pid = ready_pid(client_of(stack), "alpha/srv")
        assert pid is not None
        assert environ_of(pid)["SIGNATURE"] == "alpha-v1"
        bad = cli("set", "alpha", "--unset", "1BAD", *c)
        assert bad.returncode == 2 and "key '1BAD' is invalid" in bad.stderr
    finally:
        assert run.stop() == 0


def test_a_reload_whose_oneshot_publishes_a_key_that_breaks_a_server_is_rolled_back(
    tmp_path: Path,
) -> None:
    """The reload counterpart: the file changes what init publishes; the server that
    failed on the new SIGNATURE failed its model after `reload` had answered 0."""
    stack = write_stack(tmp_path, PUBLISHING)
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        stack.write_text(PUBLISHING.replace('MARKET = "us"', 'MARKET = "eu"'))
        result = cli("reload", "-c", str(stack))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "rolled back: alpha/srv failed: srv: eu not supported" in result.stdout
        client = client_of(stack)
        pid = wait_until(
            lambda: model_state(client, "alpha") == "running" and ready_pid(client, "alpha/srv"),
            "model alpha running on the previous file",
        )
        assert environ_of(pid)["SIGNATURE"] == "us-sig"
    finally:
        assert run.stop() == 0


def test_a_reload_whose_oneshot_publishes_a_key_restarts_and_reports_the_servers(
    tmp_path: Path,
) -> None:
    text = PUBLISHING.replace("eu-sig", "never-sig")
    stack = write_stack(tmp_path, text)
    run = Run(stack)
    try:
        run.event("alpha/srv", "running", ready=True)
        stack.write_text(text.replace('MARKET = "us"', 'MARKET = "eu"'))
        result = cli("reload", "-c", str(stack))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "alpha/init" in result.stdout and "alpha/srv" in result.stdout, result.stdout
        pid = ready_pid(client_of(stack), "alpha/srv")
        assert pid is not None
        assert environ_of(pid)["SIGNATURE"] == "eu-sig"
    finally:
        assert run.stop() == 0
