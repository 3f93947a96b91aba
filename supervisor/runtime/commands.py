"""A unit runner's inbox: the commands it takes, and the `Waiter` through which a caller
learns the outcome of its `Start`, `Restart`, `Replace` or `Watch`.

A command is answered exactly once — by the runner on the transition that settles it, or
at once by `abandon` when it will not be carried out — never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from supervisor.runtime.gate import Verdict
from supervisor.state import StopReason


@dataclass(eq=False)
class Waiter:
    """A caller's wait for one unit's next settled outcome."""

    unit: str
    done: anyio.Event = field(default_factory=anyio.Event)
    verdict: Verdict | None = None

    def resolve(self, verdict: Verdict) -> None:
        if self.verdict is None:
            self.verdict = verdict
            self.done.set()


@dataclass(frozen=True)
class Start:
    """Start the unit unless it has a life; a no-op is answered as such. `by_change`:
    the second half of a change's restart, which leaves a unit a user stopped meanwhile
    stopped (as `Replace` does)."""

    waiter: Waiter | None = None
    by_change: bool = False


@dataclass(frozen=True)
class Restart:
    """Stop the current instance (if any) and start afresh; joins one in flight."""

    waiter: Waiter | None = None


@dataclass(frozen=True)
class Replace:
    """Start a new instance with the current config, now: with `overlap`, the running
    one serves until the new one is ready and is stopped then (if the new one ends
    before it is ready, the old one serves on); else it is stopped first. Never joins a
    restart in flight (that one may have old keys)."""

    waiter: Waiter | None = None


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    text: str = ""
    done: anyio.Event | None = None


@dataclass(frozen=True)
class Watch:
    """Answer `waiter` with the current life's outcome (at once if it has settled)."""

    waiter: Waiter


@dataclass(frozen=True)
class Retire:
    """Stop for good: the unit leaves the stack."""

    done: anyio.Event


Command = Start | Restart | Replace | Stop | Watch | Retire


def abandon(command: Command, why: str) -> None:
    """Answer a command that will not be carried out, with why."""
    if isinstance(command, Stop | Retire):
        if command.done is not None:
            command.done.set()
    elif command.waiter is not None:
        command.waiter.resolve(Verdict(False, why))
