"""Starting one instance of a unit: exec'd cold, or forked warm from a zygote
(`preload`), with a held listening socket passed as fd 3 (`socket = true`).

Invariant: every process started here is registered with the guard before this returns,
so a `kill -9` of the supervisor at any later moment still ends it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence

import anyio
import anyio.abc

from supervisor.osproc.guard import Guard
from supervisor.osproc.sockets import with_listen_fds
from supervisor.osproc.spawn import Child, Reaper, spawn
from supervisor.osproc.tree import kill_tree
from supervisor.osproc.zygote import WarmStartError, Zygote, module_command, zygote_environment


class Launcher:
    """Starts instances; owns the zygotes (one per python, preload and cwd)."""

    def __init__(self, reaper: Reaper, guard: Guard) -> None:
        self.reaper, self.guard = reaper, guard
        self._zygotes: dict[tuple[str, tuple[str, ...], str], Zygote] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def bind(self, tg: anyio.abc.TaskGroup) -> None:
        """The task group zygotes run in (they outlive any one unit's task)."""
        self._tg = tg

    async def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        *,
        preload: Sequence[str] = (),
        held: socket.socket | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start one instance.

        Args:
            base_env: the environment a new zygote gets (no unit or model keys).

        Raises:
            SpawnError: a cold start could not exec.
            WarmStartError: a warm start failed (the zygote is missing, dead or silent).
        """
        if preload:
            child = await self._fork(argv, env, cwd, preload, held, base_env or {})
        elif held is None:
            child = spawn(argv, env, cwd, reaper=self.reaper)
        else:
            # The lowest free descriptor is usually a single digit, which sh can move.
            low = os.dup(held.fileno())
            try:
                wrapped = with_listen_fds(tuple(argv), low)
                child = spawn(wrapped, env, cwd, reaper=self.reaper, pass_fds=(low,))
            finally:
                os.close(low)
        self.guard.watch(child.pid)
        return child

    async def _fork(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        preload: Sequence[str],
        held: socket.socket | None,
        base_env: Mapping[str, str],
    ) -> Child:
        parsed = module_command(argv)
        if parsed is None:
            raise WarmStartError("preload needs a command of the form `python -m MODULE ...`")
        python, module, args = parsed
        key = (python, tuple(preload), cwd)
        zygote = self._zygotes.get(key)
        if zygote is None or zygote.ended.is_set():
            if zygote is not None and zygote.pid is not None:
                self.guard.forget(zygote.pid)  # its session is gone: never kill a reused id
            zygote = Zygote(python, preload, zygote_environment({}, base_env), cwd, self.reaper)
            self._zygotes[key] = zygote
            if self._tg is None:
                raise WarmStartError("warm starts need a running supervisor")
            await self._tg.start(zygote.run)
            if zygote.pid is not None:
                self.guard.watch(zygote.pid)
        extra: tuple[int, ...] = ()
        if held is not None:
            env = {**env, "LISTEN_FDS": "1"}
            extra = (held.fileno(),)
        return await zygote.fork(module, args, env, cwd, extra)

    def helper_pids(self) -> set[int]:
        """Processes run for the supervisor itself: the guard and the zygotes."""
        pids = {z.pid for z in self._zygotes.values() if z.pid is not None}
        if self.guard.pid is not None:
            pids.add(self.guard.pid)
        return pids

    async def stop_zygotes(self) -> None:
        for zygote in self._zygotes.values():
            process = zygote.process
            if process is not None and process.returncode is None:
                await kill_tree(process.pid, None, [], process.exited)
            if zygote.pid is not None:
                self.guard.forget(zygote.pid)
