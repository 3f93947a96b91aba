"""The zygote's answers as the supervisor reads them: a warm child that ends at once
(a unit failing on its configuration) must still report its exit status, even when the
zygote's "forked" and "exited" answers reach the supervisor together."""

from __future__ import annotations

import os
import signal
import time

import anyio
import anyio.lowlevel

from supervisor.osproc.spawn import Child, Reaper
from supervisor.osproc.zygote import Zygote, zygote_environment
from tests.helpers import PY, ROOT

WAIT = 10.0


async def _fork_while_the_loop_is_busy() -> Child:
    reaper = Reaper()
    zygote = Zygote(
        PY, ["tests.children.warm.heavy"], zygote_environment({}, os.environ), str(ROOT), reaper
    )
    forked: list[Child] = []
    taken = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(reaper.run)
        await tg.start(zygote.run)
        try:
            with anyio.fail_after(WAIT):
                await zygote.ready.wait()

            async def fork() -> None:
                env = dict(os.environ)
                forked.append(await zygote.fork("tests.children.warm.quick_exit", [], env, "."))
                taken.set()

            tg.start_soon(fork)
            with anyio.fail_after(WAIT):
                while zygote._next == 0 or zygote._lock.locked():  # until the request is out
                    await anyio.lowlevel.checkpoint()
            # The supervisor's loop is busy (a loaded machine): meanwhile the zygote forks,
            # the child exits, and both answers wait in the socket to be read at once.
            time.sleep(0.5)  # noqa: ASYNC251  (blocking the loop is the point)
            with anyio.move_on_after(WAIT):
                await taken.wait()
                await forked[0].exited.wait()
        finally:
            assert zygote.pid is not None
            os.kill(zygote.pid, signal.SIGKILL)
            with anyio.fail_after(WAIT):
                await zygote.ended.wait()
            tg.cancel_scope.cancel()
    return forked[0]


def test_a_warm_child_that_ends_before_its_fork_returns_still_reports_its_exit() -> None:
    child = anyio.run(_fork_while_the_loop_is_busy)
    for fd in (child.stdout, child.stderr):
        os.close(fd)
    assert child.returncode == 3, "the exit status was lost: the unit would show running"
    assert child.exited.is_set()
