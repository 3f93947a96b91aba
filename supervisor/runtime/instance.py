"""One instance of a unit: spawn (cold or warm), drain its output, serve its notify
socket, wait for its probe, wait for its exit, and end what it left behind.

Invariants:
- When `run` returns or is cancelled, the instance's whole process tree is gone: the
  teardown is shielded and bounded, a graceful stop (the unit's stop signal, then SIGKILL
  after `stop_timeout`) unless the supervisor is forcing, when everything is killed at once.
- Output is drained line by line for as long as the pipes are open; a final line
  without a newline is delivered when the unit exits.
- Keys a service publishes are taken when it becomes ready, a oneshot's when it exits 0;
  a bad hand-off file fails the instance (`Ended.fatal`).
- Liveness runs only after ready, for as long as the instance lives: `failures`
  consecutive failed attempts stop it (gracefully) and end it with `Ended.liveness`, so
  the policy restarts this unit alone with the reason "liveness: ...".
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.abc

from supervisor.config.handoff import PublishError
from supervisor.control.plane import LogRecord
from supervisor.errors import ConfigError
from supervisor.observe import Histogram, ToolList
from supervisor.osproc.listening import ListenWatch
from supervisor.osproc.pipes import read_lines
from supervisor.osproc.sockets import notify_socket
from supervisor.osproc.spawn import Child, Reaper, SpawnError
from supervisor.osproc.tree import kill_tree, stop_tree
from supervisor.osproc.zygote import WarmStartError
from supervisor.plan import RenderedLive, Rendering
from supervisor.policy import Ended
from supervisor.runtime.probes import ProbeContext, ProbeTimeout, attempt_live, wait_ready
from supervisor.runtime.record import UnitRecord
from supervisor.secrets import Redactor

AFTER_EXIT_STOP_TIMEOUT = 2.0  # leftovers of a unit whose leader exited get this long
DRAIN_AFTER_EXIT = 1.0  # output still buffered in pipes when a unit has ended


class InstanceHost(Protocol):
    """What an instance needs from the stack around it."""

    forced: anyio.Event  # set on a second Ctrl-C: stops kill at once
    reaper: Reaper  # exec probes spawn through it
    listening: ListenWatch  # the one reader of listening ports, for tcp readiness probes
    redactor: Redactor  # output is masked as it is read, before it is kept or split

    async def launch(self, record: UnitRecord, rendering: Rendering) -> Child: ...

    def released(self, child: Child) -> None: ...

    def emit(self, record: LogRecord) -> None: ...

    def take_published(self, record: UnitRecord) -> None: ...

    def tools_seen(self, record: UnitRecord, tools: ToolList) -> None: ...

    def observed(self, record: UnitRecord, text: str) -> None: ...


class Transitions(Protocol):
    """The unit's own state changes, made by its runner (the only writer)."""

    def spawned(self, child: Child) -> None: ...

    def became_ready(self, child: Child) -> None: ...

    def became_unready(self, child: Child, reason: str) -> None: ...

    def stopping(self, child: Child) -> None: ...


class _Quiet:
    """The transitions of a retired instance: none reach the unit."""

    def spawned(self, child: Child) -> None:
        return None

    def became_ready(self, child: Child) -> None:
        return None

    def became_unready(self, child: Child, reason: str) -> None:
        return None

    def stopping(self, child: Child) -> None:
        return None


class Instance:
    def __init__(
        self, record: UnitRecord, rendering: Rendering, host: InstanceHost, to: Transitions
    ) -> None:
        self.record, self.rendering, self.host, self.to = record, rendering, host, to
        self.log_matched = anyio.Event()
        self.notified = anyio.Event()
        self.probe_error = ""
        self.fatal = ""
        self.liveness = ""
        self.ready = False
        # Heartbeats for a `log` / `notify` liveness probe: matching lines, WATCHDOG=1.
        self.beats = 0
        self.retired = False  # replaced by a newer instance (overlap): it speaks no more
        self.marker = record.marker  # its own: an overlapping successor has another
        self.child: Child | None = None  # its leader, once spawned

    def retire(self) -> None:
        """Another instance speaks for the unit from now on; this one serves on until it
        is cancelled, without changing the unit's status."""
        self.retired = True
        self.to = _Quiet()

    def reinstate(self, to: Transitions) -> None:
        """Its successor failed: this instance speaks for the unit again."""
        self.retired = False
        self.to = to

    def __repr__(self) -> str:
        child = self.record.child
        return f"<instance of {self.record.name} {child!r}>"

    async def run(self) -> Ended:
        record, spec = self.record, self.record.unit.spec
        record.reset_env_file()
        started = anyio.current_time()
        sock = None
        if record.notify_path is not None:
            sock = await notify_socket(record.notify_path)
        try:
            child = await self.host.launch(record, self.rendering)
        except (SpawnError, WarmStartError, ConfigError) as exc:  # ConfigError: its port
            if sock is not None:
                await sock.aclose()
            problems = exc.problems if isinstance(exc, ConfigError) else ()
            return Ended(None, fatal="; ".join(p.message for p in problems) or str(exc))
        record.child = self.child = child
        self.to.spawned(child)
        swept = False  # what the leader left behind has been ended
        drained, stops = [], []
        try:
            for fd, stream in ((child.stdout, "stdout"), (child.stderr, "stderr")):
                drained.append(anyio.Event())
                on_line = self._on_line(stream)
                stops.append(read_lines(fd, on_line, drained[-1], masker=self.host.redactor))
            async with anyio.create_task_group() as tg:
                if sock is not None:
                    tg.start_soon(self._serve_notify, sock)
                if not spec.oneshot:
                    tg.start_soon(self._become_ready, child)
                await child.exited.wait()
                # The leader is gone: end what it left behind, as systemd does. Shielded:
                # a cancellation now must not leave a grandchild running.
                with anyio.CancelScope(shield=True):
                    await stop_tree(
                        child.pid,
                        self.marker,
                        signal.SIGTERM,
                        AFTER_EXIT_STOP_TIMEOUT,
                        child.exited,
                    )
                swept = True
                with anyio.move_on_after(DRAIN_AFTER_EXIT):
                    for event in drained:
                        await event.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if child.returncode is None:
                    await self._stop(child)
                elif not swept:  # it exited as it was stopped: its leftovers go all the same
                    await kill_tree(child.pid, self.marker, [], child.exited)
                for stop in stops:
                    stop()
                for fd in (child.stdout, child.stderr):
                    os.close(fd)
                if sock is not None:
                    await sock.aclose()
                self.host.released(child)
                if record.child is child:  # not the instance that replaced it
                    record.child = None
        if spec.oneshot and child.returncode == 0 and not self.fatal:
            try:
                self.host.take_published(record)
            except PublishError as exc:
                self.fatal = str(exc)
        return Ended(
            child.returncode,
            ran=anyio.current_time() - started,
            was_ready=self.ready,
            probe_error=self.probe_error,
            fatal=self.fatal,
            last_stderr=record.last_stderr,
            liveness=self.liveness,
        )

    def _on_line(self, stream: str) -> Callable[[str], None]:
        record = self.record
        probe = self.rendering.probe
        # re caches compiled patterns: one compile per regex, however many restarts.
        pattern = re.compile(probe.target[0]) if probe is not None and probe.kind == "log" else None
        live = self.rendering.live
        heartbeat = re.compile(live.probe.target[0]) if live and live.probe.kind == "log" else None

        def on_line(text: str) -> None:
            line = LogRecord(time.time(), record.name, stream, text)
            record.logs.append(line)
            if stream == "stderr" and text.strip():
                record.last_stderr = text.strip()
            if pattern is not None and not self.log_matched.is_set() and pattern.search(text):
                self.log_matched.set()
            if heartbeat is not None and self.ready and heartbeat.search(text):
                self.beats += 1
            self.host.emit(line)

        return on_line

    async def _serve_notify(self, sock: anyio.abc.UNIXDatagramSocket) -> None:
        """sd_notify datagrams: READY=1 makes the unit ready, STATUS= is shown in status."""
        async for data, _ in sock:
            for line in data.decode(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key == "READY" and value == "1":
                    self.notified.set()
                elif key == "WATCHDOG" and value == "1":
                    self.beats += 1
                elif key == "STATUS":
                    self.record.status_text = value

    async def _become_ready(self, child: Child) -> None:
        rendering, spec = self.rendering, self.record.unit.spec
        try:
            if rendering.probe is None:
                await anyio.sleep(spec.start_seconds)
            else:
                context = self._context(
                    self.record.histogram("ready", rendering.probe.kind), ready=True
                )
                await wait_ready(rendering.probe, context)
                if context.tools is not None:
                    self.host.tools_seen(self.record, context.tools)
        except ProbeTimeout as exc:
            self.probe_error = str(exc)
            await self._stop_gracefully(child)
            return
        if child.returncode is not None:
            return
        try:
            self.host.take_published(self.record)
        except PublishError as exc:
            self.fatal = str(exc)
            await self._stop_gracefully(child)
            return
        self.ready = True
        self.to.became_ready(child)
        if rendering.live is not None:
            await self._stay_alive(child, rendering.live)

    def _context(self, histogram: Histogram | None, *, ready: bool = False) -> ProbeContext:
        record = self.record

        def on_error(error: str) -> None:
            record.probe_error = error

        return ProbeContext(
            self.host.reaper,
            self.rendering.environ,
            self.rendering.cwd,
            self.log_matched,
            self.notified,
            histogram=histogram,
            on_error=on_error,
            listening=self.host.listening if ready else None,
        )

    async def _stay_alive(self, child: Child, live: RenderedLive) -> None:
        """Liveness: an attempt every `interval`; after `failures` consecutive failed
        ones, stop the instance so that the policy restarts it."""
        record, probe = self.record, live.probe
        heartbeat = probe.kind in ("log", "notify")  # nothing to time: no histogram
        context = self._context(None if heartbeat else record.histogram("live", probe.kind))
        record.live_failures = 0
        beats = self.beats
        while True:
            await anyio.sleep(probe.interval)  # the probe's schedule, not a wait for an event
            if heartbeat:
                what = "matching line" if probe.kind == "log" else "WATCHDOG=1"
                error = "" if self.beats > beats else f"no {what} for {probe.interval:g} s"
                beats = self.beats
            else:
                error = await attempt_live(probe, context)
            record.probe_error = error
            if not error:
                record.live_failures = 0
                continue
            record.live_failures += 1
            self.host.observed(
                record,
                f"liveness: {probe.kind} probe failed "
                f"({record.live_failures}/{live.failures}): {error}",
            )
            if record.live_failures >= live.failures:
                self.liveness = (
                    f"liveness: {probe.kind} probe failed {record.live_failures} times "
                    f"in a row ({error})"
                )
                self.to.became_unready(child, f"{self.liveness}; restarting")
                await self._stop_gracefully(child)
                return

    async def _stop(self, child: Child) -> None:
        """Stop the tree (cancelled from outside): graceful, unless the supervisor forces
        or the grace runs out; then SIGKILL whatever is left."""
        self.to.stopping(child)
        spec = self.record.unit.spec
        if not self.host.forced.is_set():
            with anyio.move_on_after(spec.stop_timeout + 2 * AFTER_EXIT_STOP_TIMEOUT):
                async with anyio.create_task_group() as tg:

                    async def until_forced() -> None:
                        await self.host.forced.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(until_forced)
                    await self._stop_gracefully(child)
                    tg.cancel_scope.cancel()
        if child.returncode is None:
            await kill_tree(child.pid, self.marker, [], child.exited)

    async def _stop_gracefully(self, child: Child) -> None:
        """The unit's stop signal to its tree, then SIGKILL after its stop_timeout."""
        spec = self.record.unit.spec
        await stop_tree(
            child.pid,
            self.marker,
            signal.Signals[spec.stop_signal],
            spec.stop_timeout,
            child.exited,
        )
