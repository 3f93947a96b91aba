"""Signals, handled in a task (uvicorn's habit), mapped with an explicit table:
SIGTERM and SIGINT stop the stack gracefully, a second SIGINT forces (kills everything,
exit 130), SIGHUP reloads the stack file."""

from __future__ import annotations

import signal

import anyio
import anyio.abc

from supervisor.errors import ControlError
from supervisor.runtime.live import LiveConfig
from supervisor.runtime.supervisor import EXIT_OK

NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}


async def handle_signals(
    live: LiveConfig, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """A front end: runs until cancelled."""
    sv = live.sv
    with anyio.open_signal_receiver(*NAMES) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                sv.start_soon(_reload, live)  # a slow reload must not hold up a SIGTERM
            elif sv.ending and signum == signal.SIGINT:
                sv.note("second interrupt: killing every unit now")
                sv.force()
            else:
                sv.note(f"{NAMES[signum]}: stopping the stack")
                sv.end(EXIT_OK, f"it received {NAMES[signum]}")


async def _reload(live: LiveConfig) -> None:
    try:
        await live.reload(by="a SIGHUP")
    except ControlError:
        pass  # reported by reload(); the running stack is untouched
    except Exception as exc:  # a bug in a reload must not take the stack down
        live.sv.note(f"reload failed: {exc!r}")
