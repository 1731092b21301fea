"""Create the actors that are missing, adopt those that exist, and report their health."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ray
from ray.exceptions import GetTimeoutError

from actors.components import ACTOR_OPTIONS, ComponentActor
from minik8s.cluster import raytoken

log = logging.getLogger("minik8s.actors")

HEALTH_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 120.0
POLL_S = 0.5


@dataclass
class ActorSpec:
    """One component of the registry placed as a named actor on the Ray node holding `resource`."""

    name: str
    component: str
    resource: str
    settings: dict[str, Any]


def connect(address: str, namespace: str, token_file: Path, node_ip: str | None = None) -> None:
    """Attach this process to the Ray cluster as a driver, authenticated with the cluster's Ray token
    (`token_file`); `node_ip` picks the local raylet to attach through when several run on this
    machine (a host-mode node joined from a netns)."""
    if not ray.is_initialized():
        raytoken.use(token_file)
        ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, log_to_driver=False,
                 _node_ip_address=node_ip)
        # Ray installs a crash handler that prints a stack on SIGTERM; children this process forks
        # (pyroute2's netns helpers) inherit it and print one each time they are stopped.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def disconnect() -> None:
    """Detach this process from Ray, before stopping the raylet it is attached through (a driver attached
    to a raylet that stops dies with it)."""
    if ray.is_initialized():
        ray.shutdown()


def ensure(specs: list[ActorSpec]) -> dict[str, Any]:
    """Every named actor exists (created if missing); returns their handles."""
    handles: dict[str, Any] = {}
    for spec in specs:
        try:
            handles[spec.name] = ray.get_actor(spec.name)
            log.info("adopted actor", extra={"actor": spec.name})
        except ValueError:
            handles[spec.name] = cast(Any, ComponentActor).options(name=spec.name, resources={spec.resource: 1},
                                                        **ACTOR_OPTIONS).remote(spec.component, spec.settings)
            log.info("created actor", extra={"actor": spec.name})
    return handles


def health(name: str) -> dict[str, Any]:
    return health_many([name])[name]


def health_many(names: list[str], timeout: float = HEALTH_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Ask every actor at once; one that does not answer within `timeout` (hung, stopped) is unhealthy."""
    asked: dict[str, Any] = {}
    states: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            asked[name] = ray.get_actor(name).health.remote()
        except ValueError:
            states[name] = {"healthy": False, "detail": "not running"}
    deadline = time.monotonic() + timeout
    for name, ref in asked.items():
        try:
            states[name] = cast(dict[str, Any], ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
        except GetTimeoutError:
            states[name] = {"healthy": False, "detail": f"no answer to the health check in {timeout:g}s"}
        except Exception as exc:  # an actor that is restarting or crashed answers with an error
            states[name] = {"healthy": False, "detail": type(exc).__name__}
    return {name: states[name] for name in names}


def wait_healthy(names: list[str], timeout: float = READY_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        states = health_many(names)
        if all(s.get("healthy") for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(POLL_S)


def kill(names: list[str]) -> None:
    for name in names:
        try:
            ray.kill(ray.get_actor(name), no_restart=True)
        except ValueError:
            continue


__all__ = ["ActorSpec", "ComponentActor", "connect", "disconnect", "ensure", "health", "health_many", "kill",
           "wait_healthy"]
