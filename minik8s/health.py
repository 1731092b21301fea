"""Liveness of a process's loops: is every loop still making progress?

A loop that handles work (a controller worker's `sync`, an informer's handlers, the
scheduler's decision) marks each step `busy(...)`; a step that has not finished after
`stuck_after_s` means the loop is stuck (a deadlock, a call that never returns). A loop that
must come round periodically (the kubelet's sync) calls `beat(...)` each round and declares
its period with `expect(...)`; no round for a few periods means it is stuck too. An idle loop
(waiting for work) is healthy: waiting is not a step.

One `WATCHDOG` per process: every component in a Ray actor's process reports into it, and
the actor's health check reads it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: A step longer than this is a stuck loop (the slowest legitimate step, a Docker image pull
#: inside the kubelet, runs in its own worker and does not count as one step of a loop here).
STUCK_AFTER_S = 120.0
#: A periodic loop missing this many of its periods is stuck...
MISSED_PERIODS = 4
#: ...but never sooner than this: a 2 s loop whose pass waits on a busy API server is slow, not stuck.
MIN_IDLE_S = 60.0


@dataclass
class Verdict:
    healthy: bool
    problems: list[str]

    @property
    def detail(self) -> str:
        return "; ".join(self.problems)


class Watchdog:
    def __init__(self, clock: Callable[[], float] = time.monotonic, stuck_after_s: float = STUCK_AFTER_S,
                 min_idle_s: float = MIN_IDLE_S) -> None:
        self.clock = clock
        self.stuck_after_s = stuck_after_s
        self.min_idle_s = min_idle_s
        self._lock = threading.Lock()
        self._busy: dict[tuple[str, int], float] = {}  # (loop, thread id) -> step started
        self._beats: dict[str, float] = {}
        self._periods: dict[str, float] = {}
        self.steps = 0  # finished steps, all loops: progress a caller can watch grow

    def configure(self, stuck_after_s: float, min_idle_s: float) -> None:
        """The thresholds of this process's component (its actor's settings; see
        minik8s.cluster.components.HealthSettings): a component whose steps are short may be judged sooner."""
        with self._lock:
            self.stuck_after_s, self.min_idle_s = stuck_after_s, min_idle_s

    @contextmanager
    def busy(self, loop: str) -> Iterator[None]:
        key = (loop, threading.get_ident())
        with self._lock:
            self._busy[key] = self.clock()
        try:
            yield
        finally:
            with self._lock:
                self._busy.pop(key, None)
                self.steps += 1

    def expect(self, loop: str, every_s: float) -> None:
        """`loop` will `beat` at least every `every_s` seconds from now on."""
        with self._lock:
            self._periods[loop] = every_s
            self._beats.setdefault(loop, self.clock())

    def beat(self, loop: str) -> None:
        with self._lock:
            self._beats[loop] = self.clock()

    def forget(self, loop: str) -> None:
        """`loop` has stopped on purpose."""
        with self._lock:
            self._periods.pop(loop, None)
            self._beats.pop(loop, None)

    def verdict(self) -> Verdict:
        now = self.clock()
        problems: list[str] = []
        with self._lock:
            for (loop, _thread), since in sorted(self._busy.items()):
                if now - since > self.stuck_after_s:
                    problems.append(f"{loop}: one step running for {now - since:.0f}s")
            for loop, period in sorted(self._periods.items()):
                idle = now - self._beats.get(loop, now)
                if idle > max(period * MISSED_PERIODS, self.min_idle_s):
                    problems.append(f"{loop}: no round for {idle:.0f}s (every {period:g}s expected)")
        return Verdict(not problems, problems)


WATCHDOG = Watchdog()
