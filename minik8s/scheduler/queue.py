"""The scheduling queue: the work queue's semantics (one key in flight, delays, back-off) with pending
pods handed out highest `spec.priority` first, oldest first among equals (kube-scheduler's activeQ)."""

from __future__ import annotations

import heapq
from collections.abc import Callable

from minik8s.client.workqueue import WorkQueue


class PriorityWorkQueue(WorkQueue):
    def __init__(self, priority_of: Callable[[str], int]) -> None:
        super().__init__()
        self._priority_of = priority_of
        self._heap: list[tuple[int, int, str]] = []
        self._order = 0

    def _push(self, key: str) -> None:
        self._order += 1
        heapq.heappush(self._heap, (-self._priority_of(key), self._order, key))

    def _pop(self) -> str:
        return heapq.heappop(self._heap)[2]

    def _size(self) -> int:
        return len(self._heap)
