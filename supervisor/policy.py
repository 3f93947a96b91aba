"""What follows an ended instance: restart after a backoff, leave it exited, or give up.
Pure: the caller sleeps the delay and makes the transition.

Backoff doubles from `backoff_initial` with ±20 % jitter, capped at `backoff_max`;
failures age out of a sliding `failure_window`, and more than `max_failures` inside it
give up. Exit 78 (EX_CONFIG) and errors that no retry can fix give up at once.
"""

from __future__ import annotations

import random
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from supervisor.config.spec import Process
from supervisor.state import ModelState

EX_CONFIG = 78  # sysexits.h: the process failed on its configuration; never loop on it


@dataclass
class FailureWindow:
    """Failure times inside a sliding window; `exceeded` once more than `limit` fit."""

    limit: int
    window: float
    times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> None:
        self.times.append(now)
        self.forget_before(now - self.window)

    def forget_before(self, cutoff: float) -> None:
        while self.times and self.times[0] < cutoff:
            self.times.popleft()

    def count(self, now: float) -> int:
        self.forget_before(now - self.window)
        return len(self.times)

    def exceeded(self, now: float) -> bool:
        return self.count(now) > self.limit

    def reset(self) -> None:
        self.times.clear()


def backoff_delay(
    failures: int, initial: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before the next start after `failures` recent failures.

    Doubles per failure from `initial`, capped at `cap`, with ±20 % jitter so that units
    failing together do not restart in lockstep.
    """
    if failures <= 0 or initial <= 0:
        return 0.0
    base = min(cap, initial * 2.0 ** (failures - 1))
    jitter = float((rng or random).uniform(0.8, 1.2))
    return float(min(cap, base * jitter))


def should_restart(policy: str, exit_code: int | None, oneshot: bool) -> bool:
    """Whether a unit that ended with `exit_code` (None: killed by a signal) runs again."""
    if policy == "always":
        return not (oneshot and exit_code == 0)
    if policy == "on-failure":
        return exit_code != 0
    return False


@dataclass(frozen=True)
class Ended:
    """How an instance ended."""

    exit_code: int | None  # None: it never ran (spawn error); negative: killed by a signal
    ran: float = 0.0  # seconds between spawn and exit
    was_ready: bool = False
    probe_error: str = ""  # not ready within its probe's `within`: a failed start
    fatal: str = ""  # cannot work on a retry (spawn error, bad publish, dead zygote)
    last_stderr: str = ""
    liveness: str = ""  # stopped after failed liveness attempts: "liveness: ..."


@dataclass(frozen=True)
class Restart:
    delay: float
    reason: str  # shown while in backoff: "exited 3; restarting in 0.52 s"
    failure: bool  # counted in the failure window


@dataclass(frozen=True)
class Exited:
    exit_code: int | None


@dataclass(frozen=True)
class GiveUp:
    reason: str


Next = Restart | Exited | GiveUp


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


def why_ended(ended: Ended) -> str:
    """What ended an instance, in words: "exited 3", "killed by SIGKILL", a probe error."""
    if ended.fatal:
        return ended.fatal
    if ended.exit_code == EX_CONFIG:
        return ended.last_stderr or "exited 78: configuration error"
    return ended.liveness or ended.probe_error or describe_exit(ended.exit_code)


def after_exit(
    spec: Process,
    ended: Ended,
    failures: FailureWindow,
    now: float,
    rng: random.Random | None = None,
) -> Next:
    """Decide what follows `ended`; a failure is recorded in `failures`."""
    code = ended.exit_code
    if ended.fatal or code == EX_CONFIG:
        return GiveUp(why_ended(ended))
    if spec.oneshot and code == 0:
        return Exited(0)
    probe_failed = bool(ended.probe_error or ended.liveness)
    why = why_ended(ended)
    again = should_restart(spec.restart, code, spec.oneshot) or (
        probe_failed and spec.restart != "never"
    )
    # An exit 0 is a failure only when the unit is to run again and died young
    # (restart = "always" on a command that returns at once): it must back off.
    died_young = ended.ran < spec.start_seconds and not ended.was_ready
    failure = code != 0 or probe_failed or (again and died_young)
    if failure:
        failures.record(now)
    if not again:
        return GiveUp(why) if failure else Exited(code)
    if failures.exceeded(now):
        count = failures.count(now)
        return GiveUp(f"{count} failures within {spec.failure_window:g} s; last: {why}")
    delay = (
        backoff_delay(failures.count(now), spec.backoff_initial, spec.backoff_max, rng)
        if failure
        else 0.0
    )
    return Restart(delay, f"{why}{RETRY_SUFFIX}{delay:.2f} s", failure)


RETRY_SUFFIX = "; restarting in "


def without_retry(reason: str) -> str:
    """A backoff's reason without its "; restarting in 0.52 s": what happened, for an
    answer after which the unit does not retry with that config (a rolled-back change)."""
    return reason.split(RETRY_SUFFIX, 1)[0]


FailureAction = Literal["ignore", "stop-model", "stop-stack"]


def failure_action(
    *,
    required: bool,
    stack_running: bool,
    domain: ModelState | None,
    global_unit: bool,
    policy: str,
) -> FailureAction:
    """What a unit that just ended `failed` does to the rest: models are failure
    domains (its model stops), a required global unit ends the stack, and a domain that
    is being changed leaves the failure to the change (which rolls back)."""
    if not required or not stack_running or domain is not ModelState.RUNNING:
        return "ignore"
    if global_unit or policy == "stop-stack":
        return "stop-stack"
    return "stop-model"
