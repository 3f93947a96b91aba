"""Restart policy: backoff with jitter and a cap, and the failure window. Pure."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

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
