"""Fan-out of frozen events and output lines to subscribers (the API's streams, tests).

Invariant: publishing never blocks and never fails the publisher; a subscriber that falls
`size` items behind is dropped (its stream is closed, so it sees the end). At the end of
the run every subscriber's stream is closed after its last item: a follower reads
everything that was published, then the end.
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

    async def close(self, patience: float) -> None:
        """No more items: each subscriber sees the end once it has read what it was
        sent. Returns when every subscriber has, or after `patience` seconds."""
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()
        with anyio.move_on_after(patience):
            while any(s.statistics().open_receive_streams for s in streams):
                await anyio.sleep(0.01)  # the subscribers' own tasks are sending them on

    def publish(self, item: T) -> None:
        for stream in list(self._streams):
            try:
                stream.send_nowait(item)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.remove(stream)
                stream.close()
