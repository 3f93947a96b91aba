"""The runtime's pure decisions, table-driven: what blocks a unit, what a waiting caller
is told, when the run is finished, what follows an exit, model transitions, readiness."""

from __future__ import annotations

import random

import pytest

from supervisor.config.model import process_spec
from supervisor.config.spec import Condition, Process
from supervisor.control.plane import StackView, UnitView
from supervisor.control.status import readiness
from supervisor.plan import Unit
from supervisor.policy import Ended, Exited, FailureWindow, GiveUp, Restart, after_exit
from supervisor.runtime.gate import blocker, finished, key_blocker, verdict
from supervisor.secrets import Redactor
from supervisor.state import (
    Blocker,
    IllegalTransition,
    ModelState,
    ModelStatus,
    State,
    Status,
    StopReason,
    advance_model,
)

RUNNING = Status(State.RUNNING, pid=5)
READY = Status(State.RUNNING, ready=True, pid=5)
DONE = Status(State.EXITED, exit_code=0)
EXITED_1 = Status(State.EXITED, exit_code=1)
FAILED = Status(State.FAILED, reason="exited 78")
USER_STOPPED = Status(State.STOPPED, stop=StopReason.USER)
MODEL_STOPPED = Status(State.STOPPED, stop=StopReason.MODEL, reason="model beta failed")
STUCK = Status(State.PENDING, blocker=Blocker("waiting for alpha KEY", permanent=True))
WAITING = Status(State.PENDING, blocker=Blocker("waiting for x to start"))


def unit(condition: Condition) -> Unit:
    spec = process_spec({"command": "run"})
    return Unit("alpha/agent", "agent", "alpha", spec, (("dep", condition),))


@pytest.mark.parametrize(
    ("condition", "dep", "reason", "permanent"),
    [
        ("ready", READY, None, False),
        ("ready", RUNNING, "waiting for dep to be ready", False),
        ("started", RUNNING, None, False),
        ("completed", DONE, None, False),
        ("completed", EXITED_1, "waiting for dep to complete (exited with 1)", True),
        ("ready", FAILED, "dep failed", True),
        ("ready", USER_STOPPED, "dep is stopped", True),
        ("ready", MODEL_STOPPED, "dep is stopped: model beta failed", True),
        ("ready", STUCK, "waiting for dep to be ready (waiting for alpha KEY)", True),
        ("ready", WAITING, "waiting for dep to be ready", False),
        ("ready", None, "waiting for dep (not in the stack)", True),
    ],
)
def test_what_blocks_a_unit(
    condition: Condition, dep: Status | None, reason: str | None, permanent: bool
) -> None:
    found = blocker(unit(condition), {"dep": dep}.get)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert (found.reason, found.permanent) == (reason, permanent)


@pytest.mark.parametrize(
    ("publishers", "permanent"),
    [
        ([], True),
        ([DONE], True),
        ([READY], True),
        ([Status(State.STARTING)], False),
        ([WAITING], False),
        ([STUCK], True),
        ([Status(State.BACKOFF, reason="exited 1")], False),
    ],
)
def test_a_missing_key_waits_for_good_unless_a_publisher_is_still_to_publish(
    publishers: list[Status], permanent: bool
) -> None:
    found = key_blocker("alpha", "SIGNATURE", publishers)
    assert found.reason == "waiting for alpha SIGNATURE"
    assert found.permanent is permanent


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (READY, (True, "")),
        (DONE, (True, "")),
        (RUNNING, None),
        (Status(State.STARTING), None),
        (WAITING, None),
        (STUCK, (False, "pending: waiting for alpha KEY")),
        (FAILED, (False, "exited 78")),
        (
            Status(State.BACKOFF, reason="exited 3; restarting in 0.5 s"),
            (False, "exited 3; restarting in 0.5 s"),
        ),
        (USER_STOPPED, (False, "stopped (user)")),
        (EXITED_1, (False, "exited with 1")),
    ],
)
def test_what_a_waiting_caller_is_told(status: Status, answer: tuple[bool, str] | None) -> None:
    found = verdict(status)
    assert (None if found is None else (found.ok, found.reason)) == answer


@pytest.mark.parametrize(
    ("status", "done"),
    [
        (DONE, True),
        (EXITED_1, True),
        (Status(State.PENDING, blocker=Blocker("x failed", permanent=True)), True),
        (Status(State.PENDING, blocker=Blocker("x stopped", permanent=True, operator=True)), False),
        (WAITING, False),
        (FAILED, False),  # it can be fixed and started again: the supervisor stays up
        (READY, False),
    ],
)
def test_when_a_unit_is_finished_for_good(status: Status, done: bool) -> None:
    assert finished(status) is done


def spec(**fields: object) -> Process:
    return process_spec({"command": "run", **fields})


@pytest.mark.parametrize(
    ("fields", "ended", "expected"),
    [
        ({}, Ended(78, ran=5, last_stderr="bad key"), GiveUp("bad key")),
        ({}, Ended(None, fatal="cannot execute 'x'"), GiveUp("cannot execute 'x'")),
        ({"oneshot": True}, Ended(0, ran=0.1), Exited(0)),
        ({}, Ended(0, ran=5, was_ready=True), Exited(0)),
        ({"restart": "never"}, Ended(2, ran=5), GiveUp("exited 2")),
        ({"restart": "always"}, Ended(0, ran=5, was_ready=True), Restart(0.0, "", False)),
        ({"backoff_initial": 1.0}, Ended(-9, ran=5), Restart(1.0, "killed by SIGKILL", True)),
        ({}, Ended(None, probe_error="not ready within 1 s"), Restart(0.5, "not ready", True)),
    ],
)
def test_what_follows_an_exit(fields: dict[str, object], ended: Ended, expected: object) -> None:
    decision = after_exit(spec(**fields), ended, FailureWindow(5, 60), 100.0, random.Random(1))
    assert type(decision) is type(expected)
    if isinstance(expected, Restart):
        assert isinstance(decision, Restart)
        assert decision.failure is expected.failure
        assert expected.reason in decision.reason
        assert expected.delay * 0.8 <= decision.delay <= expected.delay * 1.2
    else:
        assert decision == expected


def test_too_many_failures_in_the_window_give_up() -> None:
    window = FailureWindow(2, 60)
    decisions = [after_exit(spec(), Ended(1, ran=5), window, float(t)) for t in range(3)]
    assert [type(d) for d in decisions] == [Restart, Restart, GiveUp]
    assert decisions[-1] == GiveUp("3 failures within 60 s; last: exited 1")


@pytest.mark.parametrize(
    ("old", "new", "legal"),
    [
        (ModelState.RUNNING, ModelState.CHANGING, True),
        (ModelState.CHANGING, ModelState.RUNNING, True),
        (ModelState.CHANGING, ModelState.STOPPING, True),
        (ModelState.STOPPING, ModelState.FAILED, True),
        (ModelState.FAILED, ModelState.RUNNING, True),
        (ModelState.FAILED, ModelState.CHANGING, False),
        (ModelState.RUNNING, ModelState.FAILED, False),
        (ModelState.STOPPING, ModelState.RUNNING, False),
    ],
)
def test_model_transitions(old: ModelState, new: ModelState, legal: bool) -> None:
    if legal:
        assert advance_model("beta", ModelStatus(old), new, "why").state is new
    else:
        with pytest.raises(IllegalTransition):
            advance_model("beta", ModelStatus(old), new)


def view(name: str, model: str | None, status: Status, required: bool = True) -> UnitView:
    return UnitView(name, name.split("/")[-1], model, status, None, required)


@pytest.mark.parametrize(
    ("units", "models", "ready", "why"),
    [
        ([view("math", None, READY), view("a/t", "a", READY)], {"a": "running"}, True, {}),
        (
            [view("math", None, RUNNING), view("a/t", "a", READY)],
            {"a": "running"},
            False,
            {"math": "running pid 5"},
        ),
        (
            [view("a/t", "a", READY), view("b/t", "b", FAILED)],
            {"a": "running", "b": "failed"},
            True,
            {},
        ),
        (
            [view("a/t", "a", FAILED), view("b/t", "b", FAILED)],
            {"a": "failed", "b": "failed"},
            False,
            {"models": "no model is ready"},
        ),
        (
            [view("a/t", "a", READY), view("a/o", "a", FAILED, required=False)],
            {"a": "running"},
            True,
            {},
        ),
        ([view("a/i", "a", DONE), view("a/t", "a", READY)], {"a": "running"}, True, {}),
    ],
)
def test_readiness_of_a_stack_with_failure_domains(
    units: list[UnitView], models: dict[str, str], ready: bool, why: dict[str, str]
) -> None:
    stack = StackView(
        1,
        "s.toml",
        "s.sock",
        tuple(units),
        {m: ModelStatus(ModelState(s), "boom" if s == "failed" else "") for m, s in models.items()},
    )
    is_ready, body = readiness(stack, Redactor())
    assert is_ready is ready
    assert body.get("units", {}) == why
    failed = {m for m, s in models.items() if s == "failed"}
    assert set(body.get("failed_models", {})) == failed
