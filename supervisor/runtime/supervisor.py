"""The supervisor: one task group, one task per unit, gating, and the stack's end.

Invariants:
- A unit starts only when every dependency condition holds and every model key it needs
  has a value; until then it is `pending` with the reason in words.
- Every status change goes through `_set`, which checks the transition table, prints and
  publishes the event, and wakes everything that waits on the stack's state.
- The supervisor never writes to its own `os.environ`: each unit's environment is built
  from scratch by `supervisor.plan.render`.
- Shutdown stops units in reverse dependency order within `shutdown_timeout`, then kills
  whatever is left; the guard process covers the case where this process is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from supervisor.config.handoff import PublishError, read_published
from supervisor.config.load import LoadedStack, settings_value
from supervisor.errors import MissingModelKey, UnresolvedReference
from supervisor.osproc import guard
from supervisor.osproc.spawn import Child, Reaper, SpawnError, become_subreaper, spawn, spawn_plain
from supervisor.osproc.tree import kill_tree, members, send, signal_group, stop_tree
from supervisor.output import Printer
from supervisor.plan import (
    RenderContext,
    Rendering,
    Unit,
    expand,
    levels,
    render,
)
from supervisor.policy import EX_CONFIG, FailureWindow, backoff_delay, should_restart
from supervisor.runtime.probes import ProbeContext, ProbeTimeout, wait_ready
from supervisor.runtime.unit import (
    LogRecord,
    Outcome,
    UnitRuntime,
    drain,
    line_handler,
    reset_env_file,
    serve_notify,
)
from supervisor.runtime.warm import WarmStartError, Zygote, module_command, zygote_environment
from supervisor.secrets import is_secret, mask
from supervisor.state import LIVE, Event, State, advance

EXIT_OK = 0
EXIT_UNIT_FAILED = 1
EXIT_FORCED = 130
AFTER_EXIT_STOP_TIMEOUT = 2.0  # leftovers of a unit whose leader exited get this long
DRAIN_AFTER_EXIT = 1.0  # output still buffered in pipes when a unit has ended
GUARD_EXIT_TIMEOUT = 2.0


SOCKET_BACKLOG = 1024  # connections that queue on a held socket while its unit restarts


def listening_socket(port: int) -> socket.socket:
    """A loopback listening socket the supervisor holds for a unit (`socket = true`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(SOCKET_BACKLOG)
    return sock


_LISTEN_LAUNCHER = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def with_listen_fds(argv: tuple[str, ...], fd: int) -> tuple[str, ...]:
    """Wrap argv so the child gets `fd` as fd 3 with LISTEN_FDS=1 and LISTEN_PID = its own
    pid (known only after the fork, hence an exec through a launcher, which keeps the pid).
    POSIX sh (dash) redirects only single-digit descriptors; a higher one goes through a
    short Python launcher instead."""
    if fd <= 9:
        moves = "" if fd == 3 else f" 3<&{fd} {fd}<&-"
        script = f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"{moves}'
        return ("/bin/sh", "-c", script, "sh", *argv)
    return (sys.executable, "-S", "-E", "-c", _LISTEN_LAUNCHER, str(fd), *argv)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Supervisor:
    """Runs one stack until it ends, is stopped, or a required unit fails."""

    def __init__(
        self,
        loaded: LoadedStack,
        printer: Printer,
        *,
        only_models: Iterable[str] = (),
    ) -> None:
        self.loaded = loaded
        self.printer = printer
        self.reaper = Reaper()
        self.exit_code = EXIT_OK
        only = list(only_models)
        self.file_models: dict[str, dict[str, str]] = {
            name: dict(keys)
            for name, keys in loaded.stack.models.items()
            if not only or name in only
        }
        self.published: dict[str, dict[str, str]] = {}
        self.api_keys: dict[str, dict[str, str]] = {}
        self.models: list[str] = list(self.file_models)
        self.units: dict[str, UnitRuntime] = {}
        self.ports: dict[str, int] = {}
        self.held_sockets: dict[str, socket.socket] = {}
        # One warm interpreter per (python, preload, cwd): modules resolve as the unit's would.
        self._zygotes: dict[tuple[str, tuple[str, ...], str], Zygote] = {}
        self.runtime_dir = Path(
            tempfile.mkdtemp(prefix="supervise-", dir=os.environ.get("XDG_RUNTIME_DIR"))
        )
        self.socket_path = str(loaded.resolve_path(settings_value(loaded, "control_socket") or ""))
        self._changed = anyio.Event()
        self._end = anyio.Event()
        self._shutting_down = False
        self._forced = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._guard: Any = None
        self._subscribers: list[anyio.abc.ObjectSendStream[Event]] = []
        self._log_subscribers: list[anyio.abc.ObjectSendStream[LogRecord]] = []
        self._exit_callbacks: list[Callable[[], None]] = []
        self._log_patterns: dict[str, re.Pattern[str]] = {}
        self._build_units()

    # ----------------------------------------------------------------- building

    def _build_units(self) -> None:
        processes = self.loaded.stack.processes
        for unit in expand(processes, self.models).values():
            if unit.name not in self.units:
                self._add_unit(unit)
        self.printer.set_units(self.units)
        self.printer.set_secrets(self._secret_values())

    def _add_unit(self, unit: Unit) -> UnitRuntime:
        spec = unit.spec
        # Global units and models live in separate trees, so no model name can collide
        # with a global process's file.
        unit_dir = (
            self.runtime_dir / "global"
            if unit.model is None
            else self.runtime_dir / "models" / unit.model
        )
        unit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        runtime = UnitRuntime(
            unit=unit,
            env_file=unit_dir / f"{unit.process}.env",
            notify_path=self._notify_path(unit),
            failures=FailureWindow(spec.max_failures, spec.failure_window),
        )
        self._assign_port(unit)
        self.units[unit.name] = runtime
        return runtime

    def _notify_path(self, unit: Unit) -> Path | None:
        if unit.spec.ready is None or not unit.spec.ready.notify:
            return None
        notify_dir = self.runtime_dir / "notify"
        notify_dir.mkdir(mode=0o700, exist_ok=True)
        return notify_dir / f"{unit.name.replace('/', '@')}.sock"

    def _refresh_unit(self, runtime: UnitRuntime, unit: Unit) -> None:
        """Adopt a reloaded spec: what was derived from the old one is derived again."""
        old = runtime.unit.spec
        runtime.unit = unit
        spec = unit.spec
        if (spec.port, spec.socket) != (old.port, old.socket):
            self._assign_port(unit)
        runtime.notify_path = self._notify_path(unit)
        if (spec.max_failures, spec.failure_window) != (old.max_failures, old.failure_window):
            runtime.failures = FailureWindow(spec.max_failures, spec.failure_window)

    def _assign_port(self, unit: Unit) -> None:
        """A unit's port (and its held socket, with `socket = true`), kept across restarts."""
        spec = unit.spec
        self.ports.pop(unit.name, None)
        held = self.held_sockets.pop(unit.name, None)
        if held is not None:
            held.close()
        if spec.socket:
            sock = listening_socket(spec.port if isinstance(spec.port, int) else 0)
            self.held_sockets[unit.name] = sock
            self.ports[unit.name] = sock.getsockname()[1]
        elif spec.port == "auto":
            self.ports[unit.name] = free_port()
        elif spec.port is not None:
            self.ports[unit.name] = spec.port

    def _forget_unit(self, name: str) -> None:
        self.units.pop(name, None)
        self.ports.pop(name, None)
        held = self.held_sockets.pop(name, None)
        if held is not None:
            held.close()

    def _secret_values(self) -> list[str]:
        values = [v for k, v in self.loaded.variables.items() if is_secret(k)]
        values += [v for k, v in self.loaded.stack.env.items() if is_secret(k)]
        for model in self.models:
            values += [v for k, v in self.model_keys(model).items() if is_secret(k)]
        return values

    def model_keys(self, model: str) -> dict[str, str]:
        """A model's runtime config: file < published < API."""
        return {
            **self.file_models.get(model, {}),
            **self.published.get(model, {}),
            **self.api_keys.get(model, {}),
        }

    def render_context(self, runtime: UnitRuntime) -> RenderContext:
        """What rendering `runtime` reads: only its own model's keys and variables, so
        that rendering N units costs N, not N²."""
        name, model = runtime.name, runtime.unit.model
        variables = {
            "SUPERVISE_UNIT": name,
            "SUPERVISE_ENV": str(runtime.env_file),
            "SUPERVISE_SOCKET": self.socket_path,
        }
        if model is not None:
            variables["SUPERVISE_MODEL"] = model
        if runtime.notify_path is not None:
            variables["NOTIFY_SOCKET"] = str(runtime.notify_path)
        return RenderContext(
            base_dir=str(self.loaded.base_dir),
            env_files=self.loaded.env_files,
            environ=self.loaded.environ,
            stack_env=self.loaded.stack.env,
            processes=self.loaded.stack.processes,
            model_keys={model: self.model_keys(model)} if model is not None else {},
            ports=self.ports,
            unit_variables={name: variables},
        )

    def render_unit(self, runtime: UnitRuntime) -> Rendering:
        """Raises MissingModelKey or UnresolvedReference, as `render` does."""
        return render(runtime.unit, self.render_context(runtime))

    # ----------------------------------------------------------------- state

    def _set(self, runtime: UnitRuntime, state: State, **changes: Any) -> None:
        old = runtime.status
        new = advance(runtime.name, old, state, **changes)
        runtime.status = new
        if new == old:
            return
        event = Event(time.time(), runtime.name, old, new)
        if not (old.state is new.state is State.PENDING and old.reason == new.reason):
            self.printer.event(event)
        self._broadcast(self._subscribers, event)
        self._wake()
        if new.state is State.FAILED and runtime.unit.spec.required and not self._shutting_down:
            self.printer.note(f"{runtime.name} is required and failed: stopping the stack")
            self._end_with(EXIT_UNIT_FAILED)
        self._check_end()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def subscribe(self, size: int = 1000) -> anyio.abc.ObjectReceiveStream[Event]:
        """State events from now on; a subscriber that falls `size` behind is dropped."""
        send, receive = anyio.create_memory_object_stream[Event](size)
        self._subscribers.append(send)
        return receive

    def subscribe_logs(self, size: int = 10_000) -> anyio.abc.ObjectReceiveStream[LogRecord]:
        """Output lines from now on; a subscriber that falls `size` behind is dropped."""
        send, receive = anyio.create_memory_object_stream[LogRecord](size)
        self._log_subscribers.append(send)
        return receive

    def on_exit(self, callback: Callable[[], None]) -> None:
        self._exit_callbacks.append(callback)

    @staticmethod
    def _broadcast(streams: list[Any], item: Any) -> None:
        for stream in list(streams):
            try:
                stream.send_nowait(item)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                streams.remove(stream)
                stream.close()

    def _end_with(self, code: int) -> None:
        if not self._end.is_set():
            self.exit_code = code
            self._end.set()

    def _check_end(self) -> None:
        """End the run when nothing is left running or able to run."""
        if self._end.is_set() or not self.units:
            return
        if all(self._settled(r) for r in self.units.values()):
            self.printer.note("every unit has finished")
            self._end_with(EXIT_OK)

    def _settled(self, runtime: UnitRuntime) -> bool:
        """Finished for good. An optional unit that failed is not: it can be fixed and
        started again through the control socket, so the supervisor stays up for it."""
        state = runtime.status.state
        if state is State.EXITED:
            return True
        if state is State.PENDING and not runtime.user_stopped:
            return self._blocked(runtime)[1]
        return False

    def _blocked(self, runtime: UnitRuntime) -> tuple[str | None, bool]:
        """Why the unit cannot start yet (None: it can), and whether it never will."""
        for dep_name, condition in runtime.unit.depends_on:
            dep = self.units.get(dep_name)
            if dep is None:
                return f"waiting for {dep_name} (not in the stack)", True
            status = dep.status
            if condition == "completed":
                if status.state is State.EXITED and status.exit_code == 0:
                    continue
                verb = "to complete"
            elif condition == "ready":
                if status.state is State.RUNNING and status.ready:
                    continue
                verb = "to be ready"
            else:
                if status.state is State.RUNNING or status.state is State.EXITED:
                    continue
                verb = "to start"
            if status.state is State.FAILED:
                return f"{dep_name} failed", True
            stuck = (status.state is State.EXITED) or (
                status.state is State.PENDING and self._blocked(dep)[1]
            )
            if dep.user_stopped:
                return f"waiting for {dep_name} (stopped)", False
            return f"waiting for {dep_name} {verb}", stuck
        return None, False

    # ----------------------------------------------------------------- running

    async def run(self) -> int:
        """Run until the stack ends; returns the exit code for `supervise run`."""
        become_subreaper()
        self._start_guard()
        try:
            # The reaper lives in an outer group, so that it still collects exits while
            # units are being stopped, even when the inner group is torn down by an error.
            async with anyio.create_task_group() as outer:
                outer.start_soon(self.reaper.run)
                try:
                    async with anyio.create_task_group() as tg:
                        self._tg = tg
                        tg.start_soon(self._handle_signals)
                        await self._start_front_ends(tg)
                        for runtime in list(self.units.values()):
                            self.start_task(runtime)
                        self._check_end()
                        await self._end.wait()
                        await self._shutdown()
                        tg.cancel_scope.cancel()
                finally:
                    outer.cancel_scope.cancel()
        finally:
            for callback in self._exit_callbacks:
                callback()
            for held in self.held_sockets.values():
                held.close()
            self._stop_guard()
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.printer.close()
        return self.exit_code

    async def _start_front_ends(self, tg: anyio.abc.TaskGroup) -> None:
        """Hook for the control socket and health server."""

    def start_task(self, runtime: UnitRuntime) -> None:
        assert self._tg is not None, "start_task needs a running supervisor"
        if runtime.has_task:
            return
        runtime.done = anyio.Event()
        runtime.scope = anyio.CancelScope()
        self._tg.start_soon(self._unit_main, runtime, runtime.scope, runtime.done)

    async def stop_task(self, runtime: UnitRuntime) -> None:
        """Cancel a unit's task and return once its tree is gone."""
        if runtime.scope is not None:
            runtime.scope.cancel()
        await runtime.done.wait()

    async def _unit_main(
        self, runtime: UnitRuntime, scope: anyio.CancelScope, done: anyio.Event
    ) -> None:
        try:
            with scope:
                try:
                    await self._unit_life(runtime)
                except Exception as exc:
                    self.printer.note(f"{runtime.name}: internal error: {exc!r}")
                    if runtime.status.state is State.STOPPING:
                        self._set(runtime, State.STOPPED)
                    elif runtime.status.state not in (State.STOPPED, State.EXITED, State.FAILED):
                        self._set(runtime, State.FAILED, reason=f"internal error: {exc!r}")
        finally:
            state = runtime.status.state
            if state in (State.PENDING, State.BACKOFF):
                self._set(runtime, State.STOPPED, reason="stopped before it started")
            elif state in (State.STARTING, State.RUNNING, State.STOPPING):
                # Cancelled between spawn and exit bookkeeping: the tree is gone (the
                # instance's own finally saw to it); say so in the state.
                if state is not State.STOPPING:
                    self._set(runtime, State.STOPPING)
                self._set(runtime, State.STOPPED)
            done.set()
            self._wake()

    async def _unit_life(self, runtime: UnitRuntime) -> None:
        while True:
            rendering = await self._gate(runtime)
            if rendering is None:
                return
            child, outcome = await self._run_instance(runtime, rendering)
            if not await self._after_exit(runtime, child, outcome):
                return

    async def _gate(self, runtime: UnitRuntime) -> Rendering | None:
        """Wait until the unit may start; its rendering, or None if it can never start."""
        while True:
            if self._shutting_down:
                await anyio.sleep_forever()
            reason, _ = self._blocked(runtime)
            if reason is None:
                try:
                    return self.render_unit(runtime)
                except MissingModelKey as exc:
                    reason = str(exc)
                except UnresolvedReference as exc:
                    self._set(runtime, State.FAILED, reason=str(exc))
                    return None
            if runtime.status.state is not State.PENDING or runtime.status.reason != reason:
                self._set(runtime, State.PENDING, reason=reason)
            await self._changed.wait()

    async def _run_instance(
        self, runtime: UnitRuntime, rendering: Rendering
    ) -> tuple[Child | None, Outcome]:
        outcome = Outcome(started_at=anyio.current_time())
        runtime.rendering = rendering
        reset_env_file(runtime.env_file)
        self._set(runtime, State.STARTING)
        log_matched, notified = anyio.Event(), anyio.Event()
        notify_sock = None
        if runtime.notify_path is not None:
            runtime.notify_path.unlink(missing_ok=True)
            notify_sock = await anyio.create_unix_datagram_socket(
                local_path=runtime.notify_path, local_mode=0o600
            )
        try:
            child = await self._spawn(runtime, rendering)
        except (SpawnError, WarmStartError) as exc:
            if notify_sock is not None:
                await notify_sock.aclose()
            outcome.fatal = str(exc)
            return None, outcome
        runtime.child = child
        runtime.generation += 1
        runtime.started_at = anyio.current_time()
        runtime.ready_at = None
        self._guard_write(f"+{child.pid}\n")
        self._set(runtime, State.RUNNING, pid=child.pid)
        pattern = self._log_pattern(rendering)
        try:
            async with anyio.create_task_group() as tg:
                drained = []
                for fd, stream in ((child.stdout, "stdout"), (child.stderr, "stderr")):
                    handler = line_handler(runtime, stream, self._emit, pattern, log_matched)
                    drained.append(anyio.Event())
                    tg.start_soon(_drain_then_set, fd, handler, drained[-1])
                if notify_sock is not None:
                    tg.start_soon(serve_notify, notify_sock, runtime, notified)
                if not runtime.unit.spec.oneshot:
                    context = ProbeContext(
                        self.reaper, rendering.environ, rendering.cwd, log_matched, notified
                    )
                    tg.start_soon(self._become_ready, runtime, child, rendering, context, outcome)
                await child.exited.wait()
                # The leader is gone: end what it left behind, as systemd does. Shielded:
                # a cancellation now must not leave a grandchild running.
                with anyio.CancelScope(shield=True):
                    await stop_tree(
                        child.pid,
                        runtime.marker,
                        signal.SIGTERM,
                        AFTER_EXIT_STOP_TIMEOUT,
                        child.exited,
                    )
                with anyio.move_on_after(DRAIN_AFTER_EXIT):
                    for event in drained:
                        await event.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if child.returncode is None:
                    await self._stop_instance(runtime, child)
                for fd in (child.stdout, child.stderr):
                    os.close(fd)
                if notify_sock is not None:
                    await notify_sock.aclose()
                self._guard_write(f"-{child.pid}\n")
                runtime.child = None
        return child, outcome

    async def _spawn(self, runtime: UnitRuntime, rendering: Rendering) -> Child:
        """Exec the unit cold, or fork it from a warm zygote (`preload`)."""
        held = self.held_sockets.get(runtime.name)
        preload = runtime.unit.spec.preload
        if not preload:
            if held is None:
                return spawn(rendering.argv, rendering.environ, rendering.cwd, reaper=self.reaper)
            # The lowest free descriptor is usually a single digit, which sh can move.
            low = os.dup(held.fileno())
            try:
                return spawn(
                    with_listen_fds(rendering.argv, low),
                    rendering.environ,
                    rendering.cwd,
                    reaper=self.reaper,
                    pass_fds=(low,),
                )
            finally:
                os.close(low)
        parsed = module_command(rendering.argv)
        if parsed is None:
            raise WarmStartError("preload needs a command of the form `python -m MODULE ...`")
        python, module, args = parsed
        key = (python, tuple(preload), rendering.cwd)
        zygote = self._zygotes.get(key)
        if zygote is None or zygote.dead:
            zygote = Zygote(
                python,
                preload,
                zygote_environment(self.loaded.env_files, self.loaded.environ),
                rendering.cwd,
                self.reaper,
            )
            self._zygotes[key] = zygote
            assert self._tg is not None
            await self._tg.start(zygote.run)
            if zygote.process is not None:
                self._guard_write(f"+{zygote.process.pid}\n")
        env = rendering.environ
        extra: tuple[int, ...] = ()
        if held is not None:
            env = {**env, "LISTEN_FDS": "1"}
            extra = (held.fileno(),)
        return await zygote.fork(module, args, env, rendering.cwd, extra)

    def helper_pids(self) -> set[int]:
        """Processes the supervisor runs for itself: the guard and the zygotes."""
        pids = {z.process.pid for z in self._zygotes.values() if z.process is not None}
        if self._guard is not None:
            pids.add(self._guard.pid)
        return pids

    async def _stop_zygotes(self) -> None:
        for zygote in self._zygotes.values():
            process = zygote.process
            if process is not None and process.returncode is None:
                await kill_tree(process.pid, b"\0", [], process.exited)

    async def _stop_instance(self, runtime: UnitRuntime, child: Child) -> None:
        self._set(runtime, State.STOPPING, pid=child.pid)
        spec = runtime.unit.spec
        if self._forced:
            await kill_tree(child.pid, runtime.marker, [], child.exited)
        else:
            with anyio.move_on_after(spec.stop_timeout + 2 * AFTER_EXIT_STOP_TIMEOUT):
                await self._stop_tree_of(runtime, child)
            if child.returncode is None:
                await kill_tree(child.pid, runtime.marker, [], child.exited)
        self._set(runtime, State.STOPPED, pid=child.pid, exit_code=child.returncode)

    def _log_pattern(self, rendering: Rendering) -> re.Pattern[str] | None:
        probe = rendering.probe
        if probe is None or probe.kind != "log":
            return None
        regex = probe.target[0]
        if regex not in self._log_patterns:
            self._log_patterns[regex] = re.compile(regex)
        return self._log_patterns[regex]

    async def _become_ready(
        self,
        runtime: UnitRuntime,
        child: Child,
        rendering: Rendering,
        context: ProbeContext,
        outcome: Outcome,
    ) -> None:
        try:
            if rendering.probe is None:
                await anyio.sleep(runtime.unit.spec.start_seconds)
            else:
                await wait_ready(rendering.probe, context)
        except ProbeTimeout as exc:
            outcome.probe_error = str(exc)
            await self._stop_tree_of(runtime, child)
            return
        if child.returncode is not None:
            return
        try:
            self._take_published(runtime)
        except PublishError as exc:
            outcome.fatal = str(exc)
            await self._stop_tree_of(runtime, child)
            return
        runtime.ready_at = anyio.current_time()
        self._set(runtime, State.RUNNING, pid=child.pid, ready=True)

    async def _stop_tree_of(self, runtime: UnitRuntime, child: Child) -> None:
        """The unit's stop signal to its tree, then SIGKILL after its stop_timeout."""
        spec = runtime.unit.spec
        await stop_tree(
            child.pid,
            runtime.marker,
            signal.Signals[spec.stop_signal],
            spec.stop_timeout,
            child.exited,
        )

    def _take_published(self, runtime: UnitRuntime) -> None:
        keys = read_published(runtime.name, runtime.env_file)
        if not keys:
            return
        model = runtime.unit.model
        if model is None:
            self.printer.note(
                f"{runtime.name} published {sorted(keys)}, but a global unit has no model: ignored"
            )
            return
        current = self.published.setdefault(model, {})
        changed = {k: v for k, v in keys.items() if current.get(k) != v}
        if changed:
            current.update(changed)
            self.printer.note(f"{runtime.name} published {', '.join(sorted(changed))}")
            self.printer.set_secrets(self._secret_values())
            self.on_keys_changed(model, source=runtime.name)

    def on_keys_changed(self, model: str, source: str) -> None:
        """A model's runtime config changed; the live-config layer restarts what it must."""
        self._wake()

    async def _after_exit(
        self, runtime: UnitRuntime, child: Child | None, outcome: Outcome
    ) -> bool:
        """Decide what follows an ended instance; True to start it again."""
        spec = runtime.unit.spec
        code = child.returncode if child is not None else None
        if outcome.fatal:
            self._set(runtime, State.FAILED, reason=outcome.fatal, exit_code=code)
            return False
        assert child is not None
        assert code is not None
        now = anyio.current_time()
        if code == EX_CONFIG:
            reason = runtime.last_stderr or "exited 78: configuration error"
            self._set(runtime, State.FAILED, reason=reason, exit_code=code)
            return False
        if spec.oneshot and code == 0:
            try:
                self._take_published(runtime)
            except PublishError as exc:
                self._set(runtime, State.FAILED, reason=str(exc), exit_code=code)
                return False
            self._set(runtime, State.EXITED, exit_code=0)
            return False
        ran = now - outcome.started_at
        why = _describe_exit(code) if not outcome.probe_error else outcome.probe_error
        again = should_restart(spec.restart, code, spec.oneshot) or (
            bool(outcome.probe_error) and spec.restart != "never"
        )
        # An exit 0 is a failure only when the unit is to run again and died young
        # (restart = "always" on a command that returns at once): it must back off.
        died_young = ran < spec.start_seconds and runtime.ready_at is None
        failure = code != 0 or bool(outcome.probe_error) or (again and died_young)
        if failure:
            runtime.failures.record(now)
        if not again:
            if failure:
                self._set(runtime, State.FAILED, reason=why, exit_code=code)
            else:
                self._set(runtime, State.EXITED, exit_code=code)
            return False
        if runtime.failures.exceeded(now):
            count = runtime.failures.count(now)
            self._set(
                runtime,
                State.FAILED,
                exit_code=code,
                reason=f"{count} failures within {spec.failure_window:g} s; last: {why}",
            )
            return False
        delay = (
            backoff_delay(runtime.failures.count(now), spec.backoff_initial, spec.backoff_max)
            if failure
            else 0.0
        )
        runtime.restarts += 1
        self._set(
            runtime, State.BACKOFF, exit_code=code, reason=f"{why}; restarting in {delay:.2f} s"
        )
        await anyio.sleep(delay)
        return True

    def _emit(self, record: LogRecord) -> None:
        self.printer.line(record.unit, record.stream, record.line, record.ts)
        if self._log_subscribers:
            self._broadcast(self._log_subscribers, record)

    # ----------------------------------------------------------------- stopping

    async def _handle_signals(self) -> None:
        names = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}
        with anyio.open_signal_receiver(*names) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.on_sighup()
                elif self._end.is_set() and signum == signal.SIGINT:
                    self.printer.note("second interrupt: killing every unit now")
                    self.force()
                else:
                    self.printer.note(f"{names[signum]}: stopping the stack")
                    self._end_with(EXIT_OK)

    async def on_sighup(self) -> None:
        """Reload hook; the live-config layer implements it."""

    def force(self) -> None:
        """Kill every unit's tree at once (second Ctrl-C)."""
        self._forced = True
        self.exit_code = EXIT_FORCED
        for runtime in self.units.values():
            child = runtime.child
            if child is not None and child.returncode is None:
                signal_group(child.pid, signal.SIGKILL)
                send(members(child.pid, runtime.marker), signal.SIGKILL)
        self._end.set()
        self._wake()

    async def _shutdown(self) -> None:
        """Stop units in reverse dependency order within shutdown_timeout."""
        self._shutting_down = True
        self._wake()
        budget = self.loaded.stack.supervise.shutdown_timeout
        with anyio.move_on_after(budget) as scope:
            await self.stop_units(list(self.units.values()))
            await self._stop_zygotes()
        if scope.cancelled_caught:
            self.printer.note(f"shutdown took longer than {budget:g} s: killing what is left")
            self.force()
            with anyio.move_on_after(5):
                await self.stop_units(list(self.units.values()))

    async def stop_units(self, runtimes: list[UnitRuntime]) -> None:
        """Stop `runtimes`, dependents before their dependencies."""
        depth = levels({r.name: r.unit for r in self.units.values()})
        chosen = {r.name for r in runtimes}
        for level in sorted({depth[n] for n in chosen}, reverse=True):
            async with anyio.create_task_group() as tg:
                for name in chosen:
                    if depth[name] == level:
                        tg.start_soon(self.stop_task, self.units[name])

    # ----------------------------------------------------------------- guard

    def _start_guard(self) -> None:
        marker = f"SUPERVISE_ENV={self.runtime_dir}/"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISE_ENV")}
        self._guard = spawn_plain([sys.executable, "-S", "-I", guard.__file__, marker], env)

    def _guard_write(self, text: str) -> None:
        if self._guard is None or self._guard.stdin is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._guard.stdin.fileno(), text.encode())

    def _stop_guard(self) -> None:
        if self._guard is None:
            return
        if self._guard.stdin is not None:
            self._guard.stdin.close()
        # A guard that lingers past the timeout still ends on its own.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._guard.wait(GUARD_EXIT_TIMEOUT)

    # ----------------------------------------------------------------- views

    def unit_status(self, runtime: UnitRuntime) -> dict[str, Any]:
        status = runtime.status
        now = anyio.current_time()
        record: dict[str, Any] = {
            "unit": runtime.name,
            "process": runtime.unit.process,
            "model": runtime.unit.model,
            "state": str(status.state),
            "ready": status.ready,
            "pid": status.pid if status.state in LIVE else None,
            "port": self.ports.get(runtime.name),
            "restarts": runtime.restarts,
            "exit_code": status.exit_code,
            "reason": mask(status.reason or runtime.status_text, self.printer.secrets),
            "uptime": (now - runtime.started_at)
            if runtime.started_at is not None and status.state is State.RUNNING
            else None,
            "required": runtime.unit.spec.required,
        }
        return record


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


async def _drain_then_set(fd: int, handler: Callable[[str], None], done: anyio.Event) -> None:
    try:
        await drain(fd, handler)
    finally:
        done.set()
