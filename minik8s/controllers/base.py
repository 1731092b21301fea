"""The sample-controller loop every queue-driven controller shares: N workers, one idempotent `sync(key)`."""

from __future__ import annotations

import logging
import threading

from minik8s.client import WorkQueue
from minik8s.errors import Conflict, MiniK8sError
from minik8s.health import WATCHDOG

log = logging.getLogger("minik8s.controllers")

MAX_RETRIES = 15


class QueueWorkers:
    """Runs `sync(key)` for keys from `queue`; on error requeue with back-off, on success forget."""

    name = "controller"

    def __init__(self, workers: int = 2) -> None:
        self.queue = WorkQueue()
        self.workers = workers
        self._threads: list[threading.Thread] = []

    def sync(self, key: str) -> None:
        raise NotImplementedError

    def run_workers(self) -> None:
        for i in range(self.workers):
            th = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            th.start()
            self._threads.append(th)

    def shutdown(self) -> None:
        self.queue.shutdown()

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                with WATCHDOG.busy(f"{self.name}-worker"):
                    self.sync(key)
                self.queue.forget(key)
            except Conflict:  # someone wrote first: retry soon with fresh data
                self.queue.add_rate_limited(key)
            except MiniK8sError as exc:
                log.warning("sync failed, requeueing", extra={"controller": self.name, "key": key,
                                                              "error": exc.message})
                if self.queue.num_requeues(key) < MAX_RETRIES:
                    self.queue.add_rate_limited(key)
                else:
                    self.queue.forget(key)
                    self.queue.add_after(key, 30.0)
            except Exception:
                log.exception("sync crashed", extra={"controller": self.name, "key": key})
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)
