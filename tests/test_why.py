"""`supervise why UNIT`: one paragraph from the recorded events — what a unit waits for
and since when, why it failed (last exit, stderr, probe), what would unblock it. Against a
real run for pending, failed and backoff units; table-driven for the rest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.control.plane import StackView, UnitHistory, UnitView
from supervisor.control.why import explain
from supervisor.observe import Note, tool_list
from supervisor.state import (
    Blocker,
    Event,
    ModelState,
    ModelStatus,
    State,
    Status,
    StopReason,
)
from tests.helpers import PY, ROOT, SVC, Run, cli, write_stack

MOODY = f'"{PY}", "-m", "tests.children.moody"'

STACK = f"""
[models.alpha]
MODE = "exit78"

[processes.needs]
per_model = true
command = ["{PY}", "{SVC}"]
inject = ["DAY"]

[processes.broken]
per_model = true
command = [{MOODY}]
cwd = "{ROOT}"
port = "auto"
inject = ["MODE"]
required = false

[processes.after]
per_model = true
command = ["{PY}", "{SVC}"]
depends_on = {{ broken = "ready" }}

[processes.flaky]
per_model = true
command = ["{PY}", "{SVC}", "--stderr", "flaky: cannot reach the exchange", "--exit", "3",
           "--sleep", "0"]
backoff_initial = 30
"""

CLOCK = r"\d\d:\d\d:\d\d \(\d+\.\d s ago\)"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    run = Run(write_stack(tmp_path, STACK))
    try:
        run.event("alpha/broken", "failed")
        run.event("alpha/flaky", "backoff")
        run.wait_for(
            lambda r: r.get("unit") == "alpha/after" and "failed" in r.get("reason", ""),
            "alpha/after pending on alpha/broken",
        )
        yield run
    finally:
        assert run.stop() == 0


def why(run: Run, unit: str) -> str:
    result = cli("why", unit, "-c", str(run.stack))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1, result.stdout  # one paragraph
    return result.stdout.strip()


def test_why_a_unit_waits_for_a_key_names_the_key_since_when_and_the_set_command(
    run: Run,
) -> None:
    text = why(run, "alpha/needs")
    assert re.match(f"alpha/needs is pending since {CLOCK}: waiting for alpha DAY[.] ", text)
    assert "No unit of alpha is about to publish DAY" in text
    assert text.endswith("To unblock it: `supervise set alpha DAY=VALUE`.")


def test_why_a_unit_waits_for_a_failed_dependency_points_at_it_and_its_start(run: Run) -> None:
    text = why(run, "alpha/after")
    assert text.startswith("alpha/after is pending since ")
    assert "alpha/broken failed" in text
    assert "`supervise why alpha/broken` says why" in text
    assert "`supervise start alpha/broken` starts it and then alpha/after" in text


def test_why_a_failed_unit_gives_its_exit_stderr_and_how_to_bring_it_back(run: Run) -> None:
    text = why(run, "alpha/broken")
    assert re.match(
        f"alpha/broken failed at {CLOCK}: moody: MODE 'exit78' is not supported[.]", text
    )
    assert "Last exit: exited 78." in text
    assert "Its last stderr lines: «moody: MODE 'exit78' is not supported»." in text
    assert text.endswith(
        "It failed on its configuration: fix that (`supervise set alpha KEY=VALUE`), then "
        "`supervise start alpha/broken` brings it back."
    )


def test_why_a_unit_in_backoff_says_when_it_retries_and_how_many_failures_are_left(
    run: Run,
) -> None:
    text = why(run, "alpha/flaky")
    assert re.match(f"alpha/flaky is in backoff since {CLOCK}: its last instance ended", text)
    assert "(exited 3)" in text and "Last exit: exited 3." in text
    assert "«flaky: cannot reach the exchange»" in text
    retry = re.search(r"It restarts by itself in (\d+\.\d) s\.", text)
    assert retry is not None and 0 < float(retry.group(1)) <= 30
    assert "That is 1 failure(s) within 60 s; more than 5 mark it failed." in text
    assert text.endswith("To retry at once: `supervise restart alpha/flaky`.")


def test_why_of_an_unknown_unit_fails_naming_it(run: Run) -> None:
    result = cli("why", "alpha/nope", "-c", str(run.stack))
    assert result.returncode == 1
    assert "unknown unit 'alpha/nope'" in result.stderr


# ---------------------------------------------------------------- table-driven

NOW = 1_000_000.0


def history(status: Status, **changes: object) -> UnitHistory:
    view = UnitView(
        "alpha/trade",
        "trade",
        "alpha",
        status,
        4000,
        True,
        tools=changes.pop("tools", None),  # type: ignore[arg-type]
        live_failures=changes.pop("live_failures", 0),  # type: ignore[arg-type]
    )
    fields: dict[str, object] = {
        "view": view,
        "entries": (Event(NOW - 5, "alpha/trade", Status(), status),),
        "stderr": (),
        "depends_on": (("alpha/init", "completed"),),
        "restart": "on-failure",
        "max_failures": 5,
        "failure_window": 60.0,
        "recent_failures": 0,
        "next_start": None,
        "probe": "mcp",
        "probe_error": "",
        "live": "",
    }
    fields.update(changes)
    return UnitHistory(**fields)  # type: ignore[arg-type]


def stack(model: ModelStatus | None = None, *others: UnitView) -> StackView:
    return StackView(1, "s.toml", "s.sock", others, {"alpha": model or ModelStatus()})


INIT_FAILED = UnitView(
    "alpha/init", "init", "alpha", Status(State.FAILED, reason="exited 1", exit_code=1), None, True
)
INIT_RUNNING = UnitView("alpha/init", "init", "alpha", Status(State.RUNNING, pid=3), None, True)
MODEL_FAILED = ModelStatus(ModelState.FAILED, "alpha/init failed: exited 1")
TOOLS = tool_list([{"name": "buy"}, {"name": "sell"}])

CASES = [
    (
        "running and ready with tools and a passing live probe",
        history(Status(State.RUNNING, ready=True, pid=7, starts=3), tools=TOOLS, live="mcp"),
        stack(),
        "alpha/trade is running (pid 7) and ready since 23:59:55 (5.0 s ago), after 2 restart(s)."
        f" It serves 2 MCP tool(s) (buy, sell), hash {TOOLS.digest}. Its mcp liveness probe "
        "passes. Nothing to do.",
    ),
    (
        "running with failing liveness",
        history(
            Status(State.RUNNING, ready=True, pid=7, starts=1),
            live="mcp",
            live_failures=2,
            probe_error="no answer within 2 s",
        ),
        stack(),
        "Its mcp liveness probe failed 2 time(s) in a row (last: no answer within 2 s)",
    ),
    (
        "running, not ready yet",
        history(Status(State.RUNNING, pid=7, starts=1), probe_error="initialize: HTTP 500"),
        stack(),
        "alpha/trade is running (pid 7) since 23:59:55 (5.0 s ago), not ready yet: its mcp probe"
        " has not passed. The last attempt: initialize: HTTP 500.",
    ),
    (
        "pending on a dependency that is still running",
        history(
            Status(
                State.PENDING,
                blocker=Blocker("waiting for alpha/init to complete", dependency="alpha/init"),
                reason="waiting for alpha/init to complete",
            )
        ),
        stack(None, INIT_RUNNING),
        "alpha/init is running pid 3; alpha/trade starts by itself once it is completed "
        "(`supervise why alpha/init` says what that waits for).",
    ),
    (
        "pending on a key a unit is about to publish",
        history(
            Status(
                State.PENDING,
                blocker=Blocker("waiting for alpha SIGNATURE", key="SIGNATURE"),
                reason="waiting for alpha SIGNATURE",
            )
        ),
        stack(),
        "A unit of alpha that publishes SIGNATURE has not done so yet; it starts by itself once "
        "it does (or once `supervise set alpha SIGNATURE=VALUE` sets it).",
    ),
    (
        "stopped because its model failed",
        history(Status(State.STOPPED, stop=StopReason.MODEL, reason="model alpha failed")),
        stack(MODEL_FAILED, INIT_FAILED),
        "alpha/trade was stopped at 23:59:55 (5.0 s ago) because model alpha failed: alpha/init "
        "failed: exited 1. `supervise why alpha/init` says why. To bring the model back: "
        "`supervise start alpha`.",
    ),
    (
        "stopped by a user",
        history(Status(State.STOPPED, stop=StopReason.USER, reason="stopped by a user")),
        stack(),
        "alpha/trade was stopped by a user at 23:59:55 (5.0 s ago). To start it: "
        "`supervise start alpha/trade`.",
    ),
    (
        "failed after liveness, its model with it",
        history(
            Status(State.FAILED, reason="liveness: mcp probe failed 3 times in a row (x)",
                   exit_code=-15),
            stderr=("a", "b"),
            entries=(Note(NOW - 9, "alpha/trade", "liveness: ..."),),
        ),
        stack(ModelStatus(ModelState.FAILED, "alpha/trade failed: liveness")),
        "alpha/trade failed: liveness: mcp probe failed 3 times in a row (x). Last exit: killed "
        "by SIGTERM. Its last stderr lines: «a» | «b». Its model alpha failed with it; its other "
        "units were stopped. Once the cause is fixed, `supervise start alpha` brings it back.",
    ),
    (
        "a completed oneshot",
        history(Status(State.EXITED, exit_code=0)),
        stack(),
        "alpha/trade completed (exited 0) at 23:59:55 (5.0 s ago); nothing to do.",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("history_", "stack_", "want"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_why_explains_every_state_from_its_history(
    history_: UnitHistory, stack_: StackView, want: str
) -> None:
    text = explain(history_, stack_, NOW)
    clock = re.sub(r"\d\d:\d\d:\d\d \(", "23:59:55 (", text)
    assert want in clock, clock


ASKER = """
import os
from supervisor.client import Client, ClientError
model = os.environ["SUPERVISE_MODEL"]
other = "beta" if model == "alpha" else "alpha"
print("own:", Client().why(f"{model}/svc")["why"], flush=True)
try:
    Client().why(f"{other}/svc")
except ClientError as exc:
    print("other:", exc.status, exc.message, flush=True)
"""

TWO_MODELS = f"""
[models.alpha]
[models.beta]

[processes.svc]
per_model = true
command = ["{PY}", "{SVC}"]
start_seconds = 0.1

[processes.asker]
per_model = true
oneshot = true
command = ["{PY}", "-c", '''{ASKER}''']
cwd = "{ROOT}"
depends_on = {{ svc = "started" }}
"""


def test_a_unit_may_ask_why_of_its_own_models_units_only(tmp_path: Path) -> None:
    run = Run(write_stack(tmp_path, TWO_MODELS))
    try:
        own = run.line("alpha/asker", "own:")
        assert own["line"].startswith("own: alpha/svc is running")
        other = run.line("alpha/asker", "other:")
        assert other["line"].startswith("other: 403 ")
        assert "not read why beta/svc" in other["line"]
    finally:
        assert run.stop() == 0
