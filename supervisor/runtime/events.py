"""Fan-out of frozen events and output lines to subscribers (the API's streams, tests).

Invariant: publishing never blocks and never fails the publisher; a subscriber that falls
`size` items behind is dropped (its stream is closed, so it sees the end).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

T = TypeVar("T")

EVENT_BACKLOG = 1000  # state events a subscriber may fall behind before it is dropped
LOG_BACKLOG = 10_000  # output lines likewise


class Broadcaster(Generic[T]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._streams: list[MemoryObjectSendStream[T]] = []

    def subscribe(self) -> MemoryObjectReceiveStream[T]:
        """Items published from now on."""
        send, receive = anyio.create_memory_object_stream[T](self.size)
        self._streams.append(send)
        return receive

    @property
    def listening(self) -> bool:
        return bool(self._streams)

    def publish(self, item: T) -> None:
        for stream in list(self._streams):
            try:
                stream.send_nowait(item)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.remove(stream)
                stream.close()
