"""`supervise why UNIT`: one paragraph that explains a unit's state from its recorded
events — what it waits for and since when, why it failed (last exit, last stderr lines,
probe result), and what would unblock it (the command to run). Pure: values in, text out.

Invariants: every sentence is built from the unit's status, its history and the stack's
view, never guessed; a command is suggested only when running it would change something.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from supervisor.control.plane import StackView, UnitHistory, UnitView
from supervisor.observe import Note, ToolsEvent
from supervisor.policy import describe_exit, without_retry
from supervisor.state import Event, ModelState, State, Status, StopReason


def explain(history: UnitHistory, stack: StackView, now: float | None = None) -> str:
    """The paragraph for `history`'s unit, as of `now` (wall clock)."""
    now = time.time() if now is None else now
    view, status = history.view, history.view.status
    name = view.name
    since = _since(history.entries, status)
    when = f" since {_clock(since, now)}" if since is not None else ""  # still so
    at = f" at {_clock(since, now)}" if since is not None else ""  # happened then
    state = status.state
    if state is State.PENDING:
        sentences = _pending(history, stack, when)
    elif state is State.STARTING:
        sentences = [f"{name} is starting{when} (instance {status.starts})."]
    elif state is State.RUNNING:
        sentences = _running(history, when)
    elif state is State.STOPPING:
        sentences = [f"{name} is stopping{when} (pid {status.pid}); it stops within its "]
        sentences[0] += "stop_timeout, then what is left is killed."
    elif state is State.STOPPED:
        sentences = _stopped(history, stack, at)
    elif state is State.BACKOFF:
        sentences = _backoff(history, when, now)
    elif state is State.FAILED:
        sentences = _failed(history, stack, at)
    else:
        sentences = _exited(history, at)
    return " ".join(s for s in sentences if s)


def _since(entries: Iterable[Event | Note | ToolsEvent], status: Status) -> float | None:
    """When the unit entered its current state (for pending: its current reason; for a
    ready unit: readiness)."""
    found = None
    for entry in reversed(list(entries)):
        if not isinstance(entry, Event):
            continue
        new = entry.new
        same = new.state is status.state and (
            (status.state is not State.PENDING or new.reason == status.reason)
            and (status.state is not State.RUNNING or new.ready == status.ready)
        )
        if not same:
            break
        found = entry.ts
    return found


def _clock(ts: float, now: float) -> str:
    ago = max(0.0, now - ts)
    words = f"{ago:.1f} s" if ago < 120 else f"{ago / 60:.0f} min"
    return f"{time.strftime('%H:%M:%S', time.localtime(ts))} ({words} ago)"


def _unit(stack: StackView, name: str) -> UnitView | None:
    return next((u for u in stack.units if u.name == name), None)


def _model_failed(stack: StackView, model: str | None) -> str:
    """The reason `model` failed, or "" if it did not."""
    if model is None or model not in stack.models:
        return ""
    status = stack.models[model]
    if status.state in (ModelState.FAILED, ModelState.STOPPING):
        return status.reason or "failed"
    return ""


def _start_command(stack: StackView, view: UnitView) -> str:
    """What starts a unit again: its model, when the model failed; else the unit."""
    if view.model is not None and _model_failed(stack, view.model):
        return f"`supervise start {view.model}`"
    return f"`supervise start {view.name}`"


def _stderr(history: UnitHistory) -> str:
    if not history.stderr:
        return ""
    lines = " | ".join(f"«{line.strip()}»" for line in history.stderr)
    return f"Its last stderr lines: {lines}."


def _last_exit(status: Status) -> str:
    return f"Last exit: {describe_exit(status.exit_code)}." if status.exit_code is not None else ""


def _pending(history: UnitHistory, stack: StackView, when: str) -> list[str]:
    view = history.view
    status, name = view.status, view.name
    blocker = status.blocker
    reason = blocker.reason if blocker is not None else status.reason
    sentences = [f"{name} is pending{when}: {reason}."]
    if blocker is None:
        return sentences
    if blocker.key:
        model = view.model or "(global)"
        command = f"`supervise set {model} {blocker.key}=VALUE`"
        if blocker.permanent:
            sentences.append(
                f"No unit of {model} is about to publish {blocker.key}: it waits until it is "
                f"set. To unblock it: {command}."
            )
        else:
            sentences.append(
                f"A unit of {model} that publishes {blocker.key} has not done so yet; it "
                f"starts by itself once it does (or once {command} sets it)."
            )
        return sentences
    if blocker.dependency:
        return sentences + _dependency(history, stack, blocker.dependency)
    if reason == "not started yet":
        sentences.append(f"To start it: {_start_command(stack, view)}.")
    return sentences


def _dependency(history: UnitHistory, stack: StackView, dep: str) -> list[str]:
    other = _unit(stack, dep)
    if other is None:
        return [f"{dep} is not in the stack: add it to the stack file, then `supervise reload`."]
    status = other.status
    condition = dict(history.depends_on).get(dep, "ready")
    describe = status.describe()
    if status.state is State.FAILED:
        return [
            f"{dep} {describe}.",
            f"`supervise why {dep}` says why; once that is fixed, "
            f"{_start_command(stack, other)} starts it and then {history.view.name}.",
        ]
    if status.state is State.STOPPED and status.stop is StopReason.USER:
        return [f"{dep} was stopped by a user. To unblock it: `supervise start {dep}`."]
    if status.state is State.STOPPED and status.stop is StopReason.MODEL:
        return [f"To unblock it: {_start_command(stack, other)} brings the model back."]
    if status.state is State.EXITED:
        return [
            f"{dep} is {describe}, which is not {condition}. "
            f"To unblock it: `supervise restart {dep}`."
        ]
    inner = status.blocker
    if inner is not None and inner.permanent:
        return [f"{dep} itself is stuck; `supervise why {dep}` says what would unblock it."]
    return [
        f"{dep} is {describe}; {history.view.name} starts by itself once it is {condition} "
        f"(`supervise why {dep}` says what that waits for)."
    ]


def _running(history: UnitHistory, when: str) -> list[str]:
    view = history.view
    status, name = view.status, view.name
    if not status.ready:
        probe = f"its {history.probe} probe" if history.probe else "its start_seconds"
        sentences = [f"{name} is running (pid {status.pid}){when}, not ready yet: {probe} "]
        sentences[0] += "has not passed."
        if history.probe_error:
            sentences.append(f"The last attempt: {history.probe_error}.")
        sentences.append("If it is not ready within its probe's `within`, the start counts as ")
        sentences[-1] += "a failure and it is restarted."
        return sentences
    restarts = f", after {status.restarts} restart(s)" if status.restarts else ""
    sentences = [f"{name} is running (pid {status.pid}) and ready{when}{restarts}."]
    if view.tools is not None:
        sentences.append(f"It serves {view.tools.describe()}.")
    if history.live:
        if view.live_failures:
            sentences.append(
                f"Its {history.live} liveness probe failed {view.live_failures} time(s) in a "
                f"row (last: {history.probe_error}); enough consecutive failures restart it."
            )
        else:
            sentences.append(f"Its {history.live} liveness probe passes.")
    sentences.append("Nothing to do.")
    return sentences


def _stopped(history: UnitHistory, stack: StackView, when: str) -> list[str]:
    view = history.view
    status, name = view.status, view.name
    stop = status.stop
    if stop is StopReason.USER:
        return [f"{name} was stopped by a user{when}. To start it: `supervise start {name}`."]
    if stop is StopReason.MODEL:
        model_reason = _model_failed(stack, view.model) or status.reason
        culprit = model_reason.split(" failed", 1)[0] if " failed" in model_reason else ""
        sentences = [f"{name} was stopped{when} because model {view.model} failed: {model_reason}."]
        if culprit and culprit != name:
            sentences.append(f"`supervise why {culprit}` says why.")
        sentences.append(f"To bring the model back: `supervise start {view.model}`.")
        return sentences
    if stop is StopReason.CHANGE:
        return [f"{name} was stopped{when} to be restarted with a new rendering; it starts again."]
    if stop is StopReason.SHUTDOWN:
        return [f"{name} was stopped{when}: the stack is shutting down."]
    return [f"{name} is stopped{when} ({status.reason or stop})."]


def _backoff(history: UnitHistory, when: str, now: float) -> list[str]:
    view = history.view
    status, name = view.status, view.name
    what = without_retry(status.reason)
    sentences = [f"{name} is in backoff{when}: its last instance ended ({what})."]
    sentences += [_last_exit(status), _stderr(history)]
    if history.next_start is not None:
        left = max(0.0, history.next_start - now)
        sentences.append(f"It restarts by itself in {left:.1f} s.")
    sentences.append(
        f"That is {history.recent_failures} failure(s) within {history.failure_window:g} s; "
        f"more than {history.max_failures} mark it failed."
    )
    sentences.append(f"To retry at once: `supervise restart {name}`.")
    return sentences


def _failed(history: UnitHistory, stack: StackView, when: str) -> list[str]:
    view = history.view
    status, name = view.status, view.name
    sentences = [f"{name} failed{when}: {status.reason or 'gave up'}."]
    sentences += [_last_exit(status), _stderr(history)]
    if history.probe_error and history.probe_error not in status.reason:
        sentences.append(f"Its last probe attempt: {history.probe_error}.")
    model_reason = _model_failed(stack, view.model)
    if model_reason:
        sentences.append(f"Its model {view.model} failed with it; its other units were stopped.")
    if status.exit_code == 78:
        fix = (
            f"`supervise set {view.model} KEY=VALUE`"
            if view.model is not None
            else "an edit of the stack file and `supervise reload`"
        )
        sentences.append(f"It failed on its configuration: fix that ({fix}), then")
    else:
        sentences.append("Once the cause is fixed,")
    sentences[-1] += f" {_start_command(stack, view)} brings it back."
    return sentences


def _exited(history: UnitHistory, when: str) -> list[str]:
    view = history.view
    status, name = view.status, view.name
    if status.exit_code == 0:
        return [f"{name} completed (exited 0){when}; nothing to do."]
    sentences = [f"{name} {describe_exit(status.exit_code)}{when}", _stderr(history)]
    sentences[0] += f" and its restart policy ({history.restart}) leaves it so."
    sentences.append(f"To run it again: `supervise start {name}`.")
    return sentences
