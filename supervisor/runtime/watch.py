"""Watching the stack file and its env files: an edit is applied as a reload.

The watcher runs in a daemon thread of its own (watchfiles, inotify), so a shutdown
never waits for it; each relevant change wakes the event loop, which reloads. If
watching cannot work here (no inotify, its limits reached), it says so and stops:
`supervise reload` and SIGHUP still do the same.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from supervisor.errors import ControlError
from supervisor.runtime.live import LiveConfig

# The watcher thread wakes every WATCH_STEP_MS to look for changes and for its stop
# event (what an edit waits before it is seen, and what a shutdown waits for the thread);
# it hands control back to the event loop every WATCH_TIMEOUT_MS. Both bound idle CPU.
WATCH_STEP_MS = 200
WATCH_TIMEOUT_MS = 30_000
DEBOUNCE_MS = 50  # an editor's write-then-rename is one change
DIRECTORY_POLL = 0.2  # how often a directory being replaced is looked for


async def watch_stack_files(
    live: LiveConfig, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """A front end: reload on every edit of the stack file or an env file."""
    task_status.started()
    try:
        await _watch(live)
    except Exception as exc:
        live.sv.note(f"not watching the stack file ({exc!r}); use `supervise reload`")


def _watched(live: LiveConfig) -> set[Path]:
    """Each file as named and as resolved: a stack file that is a symlink is reloaded
    when the link is pointed elsewhere, and when the file it points at is edited."""
    paths = set()
    for path in live.sv.loaded.watched:
        named = Path(path).absolute()
        paths |= {named, named.resolve()}
    return paths


def _directories(live: LiveConfig) -> set[str]:
    return {str(p.parent) for p in _watched(live) if p.parent.is_dir()}


def _identity(directories: set[str]) -> dict[str, tuple[int, int] | None]:
    """Which directory each path names now: a watch is on an inode, and one replaced
    whole (`rm -rf conf && cp -r new conf`) is not the one watched any more."""
    found: dict[str, tuple[int, int] | None] = {}
    for directory in directories:
        try:
            info = os.stat(directory)
        except OSError:
            found[directory] = None
        else:
            found[directory] = (info.st_dev, info.st_ino)
    return found


async def _watch(live: LiveConfig) -> None:
    catch_up = False
    while True:
        directories = _directories(live)
        while not directories:  # the stack file's directory is being replaced
            await anyio.sleep(DIRECTORY_POLL)
            directories = _directories(live)
        identity = _identity(directories)
        stop = threading.Event()
        send, receive = anyio.create_memory_object_stream[BaseException | None](1)
        # Which files count is asked at each change, of the plan as it is then: a reload
        # that points the watch elsewhere in the same directories (a symlink retargeted,
        # another env file beside the first) misses no edit made right after it.
        wanted = partial(_watched, live)
        thread = _Watcher(wanted, directories, stop, send, anyio.lowlevel.current_token())
        thread.start()
        try:
            async with receive:
                if catch_up:  # what changed while no watch was on the new directory
                    catch_up = False
                    await _reload(live)
                async for failure in receive:
                    if failure is not None:
                        raise failure
                    await _reload(live)
                    # An env file in another directory, or a directory replaced whole:
                    # watch anew, and reload once more for what changed in between.
                    if _directories(live) != directories or _identity(directories) != identity:
                        catch_up = True
                        break
        finally:
            stop.set()


async def _reload(live: LiveConfig) -> None:
    live.sv.note("stack or env file changed: reloading")
    try:
        await live.reload(by="the file watcher")
    except ControlError:
        pass  # reported by reload(); the running stack is untouched
    except Exception as exc:
        live.sv.note(f"reload failed, nothing changed: {exc!r}")


class _Watcher(threading.Thread):
    def __init__(
        self,
        wanted: Callable[[], set[Path]],
        directories: set[str],
        stop: threading.Event,
        send: MemoryObjectSendStream[BaseException | None],
        token: anyio.lowlevel.EventLoopToken,
    ) -> None:
        super().__init__(name="supervise-watch", daemon=True)
        self.wanted, self.directories, self.stop_event = wanted, directories, stop
        self.send, self.token = send, token

    def _hand_over(self, item: BaseException | None) -> None:
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
            self.send.send_nowait(item)  # one pending wake-up is enough

    def _wake(self, item: BaseException | None) -> None:
        call: Callable[[BaseException | None], object] = self._hand_over
        anyio.from_thread.run_sync(call, item, token=self.token)

    def run(self) -> None:
        from watchfiles import watch

        try:
            for changes in watch(
                *self.directories,
                stop_event=self.stop_event,
                debounce=DEBOUNCE_MS,
                step=WATCH_STEP_MS,
                rust_timeout=WATCH_TIMEOUT_MS,
                recursive=False,
                raise_interrupt=False,
            ):
                watched = self.wanted()
                if any(_touches(Path(path), watched) for _, path in changes):
                    self._wake(None)
        except Exception as exc:
            with contextlib.suppress(Exception):  # the loop may be gone already
                self._wake(exc)


def _touches(path: Path, watched: set[Path]) -> bool:
    return path in watched or path.resolve() in watched
