"""The one actor class: it hosts one component of the registry (minik8s.cluster.components).

The actor builds its component in __init__ (so a Ray restart rebuilds it), answers health
checks with the component's probe and the process watchdog, and exits when it has been
unhealthy for `restart_after_s`, so that Ray (max_restarts=-1) starts a fresh one. The
thresholds come from the `health` entry of the component's settings (HealthSettings).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import ray

from minik8s.cluster import components as registry

log = logging.getLogger("minik8s.actors")

ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1,
                                 "max_concurrency": 4, "lifetime": "detached"}
#: Exit status of an actor that stopped itself because its component was stuck.
STUCK_EXIT = 70


def _logging() -> None:
    logging.basicConfig(level=os.environ.get("MINIK8S_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


@ray.remote
class ComponentActor:
    def __init__(self, component: str, settings: dict[str, Any]) -> None:
        _logging()
        self.component = registry.get(component)
        self.limits = registry.HealthSettings.of(settings)
        self.limits.apply()  # one component per process: its thresholds are the process's
        self.running = self.component.factory(settings)
        threading.Thread(target=self._supervise, name="self-check", daemon=True).start()

    def health(self) -> dict[str, Any]:
        return registry.health(self.component, self.running)

    def _supervise(self) -> None:
        """Exit (Ray restarts the actor) once the component has been unhealthy for `restart_after_s`."""
        timer = registry.StuckTimer(self.limits.restart_after_s)
        while True:
            time.sleep(self.limits.self_check_s)
            state = self.health()
            if timer.observe(state["healthy"], time.monotonic()):
                log.error("component stuck, exiting so that Ray restarts it",
                          extra={"component": self.component.name, "detail": state["detail"]})
                logging.shutdown()
                os._exit(STUCK_EXIT)
