"""Each control-plane component of the registry starts from its factory and reports healthy
against a real etcd + API server, as its actor would (no Ray)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from minik8s.cluster import components as registry
from tests.conftest import TEST_TOKEN, free_port, wait_for

START_S = 30.0


def _settings(apiserver: str, name: str) -> dict[str, Any]:
    client = {"server": apiserver, "token": TEST_TOKEN, "ca": None}
    extra: dict[str, dict[str, Any]] = {
        "controller-manager": {"node_lifecycle": {"node_monitor_grace_s": 40.0}},
        "gateway": {"gateway": {"hosts": ["127.0.0.1"], "port": free_port(),
                                "config_url": "http://127.0.0.1:1/config"}},
    }
    return {**client, **extra.get(name, {})}


@pytest.mark.parametrize("name", ["scheduler", "controller-manager", "gateway"])
def test_component_starts_and_is_healthy(apiserver: str, name: str) -> None:
    component = registry.get(name)
    t0 = time.monotonic()
    running = component.factory(_settings(apiserver, name))
    try:
        started = time.monotonic() - t0
        state = wait_for(lambda: (s := registry.health(component, running))["healthy"] and s, START_S)
        assert state["pid"] > 0 and state["detail"] == "", (state, started)
        obj = getattr(running, "obj", running)
        informers = obj.informers.informers() if name == "controller-manager" else [
            inf for inf in vars(obj).values() if hasattr(inf, "wait_synced")]
        assert informers and all(inf.wait_synced(START_S) for inf in informers)
        starter = getattr(running, "thread", None)
        if starter is not None:
            starter.join(START_S)  # a starting thread that has finished its job must not make it unhealthy
        assert registry.health(component, running)["healthy"]
    finally:  # a component left running would act on the objects of the tests after this one
        getattr(running, "obj", running).stop()
