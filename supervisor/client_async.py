"""`AsyncClient`: the calls of `supervisor.client.Client` for async code.

Each call runs the synchronous client in a worker thread (anyio), so an async caller
gets the same answers and the same errors (`ClientError`, `NoSupervisorError`).
Imported on first use of `supervisor.client.AsyncClient`: the synchronous client
commands never load this module, nor anyio.
"""

from __future__ import annotations

import os

from supervisor.client import Client

TYPE_CHECKING = False  # as in supervisor.client: importing typing costs a client 4 ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


class AsyncClient:
    """The same calls for async code; each runs in a worker thread (anyio)."""

    def __init__(self, socket: str | os.PathLike[str] | None = None) -> None:
        self._client = Client(socket)

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        import functools

        import anyio.to_thread

        call = functools.partial(getattr(self._client, method), *args, **kwargs)
        result: dict[str, Any] = await anyio.to_thread.run_sync(call)
        return result

    async def status(self, unit: str | None = None) -> dict[str, Any]:
        return await self._run("status", unit)

    async def set(
        self,
        model: str,
        keys: Mapping[str, str],
        *,
        unset: Sequence[str] = (),
        wait: bool = True,
        timeout: float | None = None,
        rollback: bool = True,
    ) -> dict[str, Any]:
        return await self._run(
            "set", model, keys, unset=unset, wait=wait, timeout=timeout, rollback=rollback
        )

    async def launch(
        self, model: str, keys: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self._run("launch", model, keys, timeout=timeout)

    async def drop(self, model: str) -> dict[str, Any]:
        return await self._run("drop", model)

    async def start(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return await self._run("start", unit, timeout)

    async def stop(self, unit: str) -> dict[str, Any]:
        return await self._run("stop", unit)

    async def restart(self, unit: str, timeout: float | None = None) -> dict[str, Any]:
        return await self._run("restart", unit, timeout)

    async def reload(self, timeout: float | None = None) -> dict[str, Any]:
        return await self._run("reload", timeout)

    async def why(self, unit: str) -> dict[str, Any]:
        return await self._run("why", unit)
