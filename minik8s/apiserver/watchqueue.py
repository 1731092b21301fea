"""The bounded queue between one watcher's etcd event feed and its HTTP stream.

A watcher that reads slower than events arrive backs up here. Past `limit` queued events the
watcher is not fed any more: what is queued is dropped, and the stream ends with an ERROR event
carrying a 410 `Expired` Status, so the client relists and watches again from the new list's
resourceVersion (kube-apiserver closes such a watcher too, "unresponsive watcher"). No event is
ever lost silently: a watcher sees every event in order, or is told to start over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from minik8s.errors import Gone
from minik8s.store import StoreEvent

OVERFLOW_MESSAGE = ("the watch fell {limit} events behind and was closed: "
                    "list again and watch from the list's resourceVersion")


class WatchQueue:
    """Fed on the event loop (`offer`, scheduled with call_soon_threadsafe), read by the stream (`get`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queue: asyncio.Queue[StoreEvent] = asyncio.Queue()
        self.overflowed = False
        self.OVERFLOW = StoreEvent("ERROR", "", None, -1)  # this queue's own marker, compared by identity

    def offer(self, ev: StoreEvent) -> None:
        if self.overflowed:
            return
        if self._queue.qsize() >= self.limit:
            self.overflowed = True
            while not self._queue.empty():  # the reader relists: free what it will not read
                self._queue.get_nowait()
            self._queue.put_nowait(self.OVERFLOW)
            return
        self._queue.put_nowait(ev)

    async def get(self) -> StoreEvent:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()

    def expired_status(self) -> dict[str, Any]:
        return Gone(OVERFLOW_MESSAGE.format(limit=self.limit)).to_status()
