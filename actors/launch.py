"""Create the actors that are missing, adopt those that exist, and report their health."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import Any, cast

import ray

from actors.components import ACTOR_OPTIONS, ApiServerActor, ControllerManagerActor, KubeletActor, SchedulerActor

log = logging.getLogger("minik8s.actors")

HEALTH_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 120.0
POLL_S = 0.5


@dataclass
class ActorSpec:
    name: str
    cls: Any
    resource: str
    args: tuple[Any, ...]


def connect(address: str, namespace: str, node_ip: str | None = None) -> None:
    """Attach this process to the Ray cluster as a driver; `node_ip` picks the local raylet to attach
    through when several run on this machine (a host-mode node joined from a netns)."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, log_to_driver=False,
                 _node_ip_address=node_ip)
        # Ray installs a crash handler that prints a stack on SIGTERM; children this process forks
        # (pyroute2's netns helpers) inherit it and print one each time they are stopped.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def ensure(specs: list[ActorSpec]) -> dict[str, Any]:
    """Every named actor exists (created if missing); returns their handles."""
    handles: dict[str, Any] = {}
    for spec in specs:
        try:
            handles[spec.name] = ray.get_actor(spec.name)
            log.info("adopted actor", extra={"actor": spec.name})
        except ValueError:
            handles[spec.name] = spec.cls.options(name=spec.name, resources={spec.resource: 1},
                                                  **ACTOR_OPTIONS).remote(*spec.args)
            log.info("created actor", extra={"actor": spec.name})
    return handles


def health(name: str) -> dict[str, Any]:
    try:
        handle = ray.get_actor(name)
        result = cast(dict[str, Any], ray.get(handle.health.remote(), timeout=HEALTH_TIMEOUT_S))
        return result
    except ValueError:
        return {"healthy": False, "detail": "not running"}
    except Exception as exc:  # an actor that is restarting or crashed answers with an error
        return {"healthy": False, "detail": type(exc).__name__}


def wait_healthy(names: list[str], timeout: float = READY_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        states = {n: health(n) for n in names}
        if all(s.get("healthy") for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(POLL_S)


def kill(names: list[str]) -> None:
    for name in names:
        try:
            ray.kill(ray.get_actor(name), no_restart=True)
        except ValueError:
            continue


__all__ = ["ActorSpec", "ApiServerActor", "ControllerManagerActor", "KubeletActor", "SchedulerActor", "connect",
           "ensure", "health", "kill", "wait_healthy"]
