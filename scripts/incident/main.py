"""Both parts of the incident's reproduction, then a before/after verdict (the script's body).

Exit status: 0 when the old way failed as in the incident and the supervised way had
zero tool errors; 1 when either did not hold; 2 when a step could not be run; 130 when
interrupted (SIGINT or SIGTERM), after every process started here was stopped.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scripts.incident.children import IncidentError
from scripts.incident.old_way import OldWay, reproduce_old_way
from scripts.incident.supervised import Supervised, run_supervised


def verdict(old: OldWay, new: Supervised) -> list[str]:
    """The before/after lines; the last one says whether both halves held."""
    if old.reproduced:
        before = (
            f"BEFORE (the old way): the first sell failed as in the incident: {old.first_order}"
        )
    else:
        before = (
            f"BEFORE (the old way): NOT reproduced; first order line {old.first_order!r}, "
            f"tool_errors={old.tally.tool_errors}, trades={old.tally.trades}"
        )
    counts = {model: new.counts(model) for model in new.models}
    after = "AFTER (under supervise): " + "; ".join(
        f"{model} days={days}/{new.days} tool_errors={errors}"
        for model, (days, errors) in counts.items()
    )
    after += f"; supervise exited {new.exit_code} on SIGTERM"
    held = old.reproduced and new.ok
    last = (
        "VERDICT: reproduced the incident, and supervise removes it" if held else "VERDICT: FAILED"
    )
    return [before, after, last]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """A SIGTERM to this script unwinds like Ctrl-C, so every child is still stopped."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    """Run both parts in a temporary directory and print the verdict; see the docstring."""
    out = sys.stdout
    with _terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="incident-") as temp:
        workdir = Path(temp)
        try:
            old = reproduce_old_way(workdir / "old", out)
            print(file=out)
            new = run_supervised(workdir / "new", out)
        except IncidentError as exc:
            print(f"ERROR {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; every process started here was stopped", file=sys.stderr)
            return 130
        print(file=out)
        lines = verdict(old, new)
        print("\n".join(lines), file=out, flush=True)
        return 0 if old.reproduced and new.ok else 1
