"""Exponential restart back-off per (pod uid, container), like the kubelet's CrashLoopBackOff.

The first restart is immediate, then each restart waits ``base * 2**(n-1)`` seconds (n =
restarts already made), capped at ``cap``, counted from when the container finished. A
container that ran for ``reset_after`` seconds or longer before exiting starts over.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

DEFAULT_BASE_SECONDS = 10.0
DEFAULT_CAP_SECONDS = 300.0
DEFAULT_RESET_AFTER_SECONDS = 600.0


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock: Docker reports wall-clock times)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class _Entry:
    restarts: int = 0


class Backoff:
    """Thread-safe back-off bookkeeping; keys are any hashable (the runtime uses (uid, name))."""

    def __init__(
        self,
        base: float = DEFAULT_BASE_SECONDS,
        cap: float = DEFAULT_CAP_SECONDS,
        reset_after: float = DEFAULT_RESET_AFTER_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self.clock: Clock = clock or SystemClock()
        self._entries: dict[object, _Entry] = {}
        self._lock = threading.Lock()

    def delay(self, key: object) -> float:
        """How long the next restart waits after the container finished."""
        with self._lock:
            restarts = self._entries.get(key, _Entry()).restarts
        if restarts == 0:
            return 0.0
        return min(self.base * (2 ** (restarts - 1)), self.cap)

    def remaining(self, key: object, finished_at: float, ran_for: float) -> float:
        """Seconds left before the container that finished at ``finished_at`` may restart (0 = now)."""
        if ran_for >= self.reset_after:
            self.reset(key)
        return max(0.0, finished_at + self.delay(key) - self.clock.now())

    def restarted(self, key: object) -> None:
        """Record that the container was restarted (the next delay doubles)."""
        with self._lock:
            self._entries.setdefault(key, _Entry()).restarts += 1

    def reset(self, key: object) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def forget_prefix(self, prefix: object) -> None:
        """Drop every tuple key whose first element is ``prefix`` (all containers of a pod uid)."""
        with self._lock:
            for key in [k for k in self._entries if isinstance(k, tuple) and k and k[0] == prefix]:
                del self._entries[key]
