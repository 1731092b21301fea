"""Health is real, end to end on a local Ray: a component actor whose loop stops making progress
reports unhealthy, exits, Ray restarts it (same actor, new process), and the new one is healthy and
finishes the work the stuck one could not.

The wedge is a legitimate one: an API server whose storage hangs on one write. The controller
manager's ServiceAccount controller creates `default` in a new namespace; this API server holds that
POST until the test lets it go (it stands for an etcd that stopped answering writes), so the
controller's worker sits in one step. The actor gets short thresholds through its settings' `health`
entry, as a cluster would configure it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from minik8s.cluster import components as registry
from tests.conftest import TEST_TOKEN, apiserver_pki_config, free_port, wait_for

RESOURCE = "minik8s/control-plane"
NAME = "controller-manager"
#: Short thresholds, so the whole chain runs in seconds (the defaults are minutes).
HEALTH = {"stuck_after_s": 2.0, "restart_after_s": 3.0, "self_check_s": 0.5}
#: The held write gives up after this long (the client's own timeout is 30 s).
HOLD_MAX_S = 60.0
START_S = 120.0


class HeldWrites:
    """ASGI wrapper around the API server: a POST of ServiceAccounts into `namespace` waits until
    `release` is set (or HOLD_MAX_S passes); every other request goes straight through."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.namespace: str | None = None
        self.release = threading.Event()
        self.held = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST" and self.namespace
                and scope["path"] == f"/api/v1/namespaces/{self.namespace}/serviceaccounts"):
            self.held.set()
            deadline = time.monotonic() + HOLD_MAX_S
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        await self.app(scope, receive, send)


@pytest.fixture
def held_api(etcd_endpoint: str, test_pki: Any) -> Iterator[tuple[str, HeldWrites]]:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                                    pod_cidr="10.0.0.0/8", **apiserver_pki_config(test_pki)))
    held = HeldWrites(api.app)
    server = ServerThread(held, ["127.0.0.1"], port, name="held-apiserver")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", held
    finally:
        held.release.set()
        server.stop()


@pytest.fixture
def local_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # a new local ray.init() turns on token auth and writes ~/.ray/auth_token unless told otherwise: this
    # throwaway Ray listens on loopback only, and the machine's home must stay as the suite found it
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(namespace=f"mk8s-health-{uuid.uuid4().hex[:6]}", resources={RESOURCE: 1}, num_cpus=1,
             include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(NAME), no_restart=True)
        ray.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stuck_component_is_reported_and_restarted_by_ray(held_api: tuple[str, HeldWrites],
                                                             local_ray: None) -> None:
    from actors import launch
    from minik8s import Client

    url, held = held_api
    settings = {"server": url, "token": TEST_TOKEN, "ca": None,
                "node_lifecycle": {"node_monitor_grace_s": 40.0}, registry.HEALTH_KEY: HEALTH}
    launch.ensure([launch.ActorSpec(NAME, NAME, RESOURCE, settings)])
    first = launch.wait_healthy([NAME], timeout=START_S)[NAME]
    assert first["healthy"], first
    actor_id = ray.get_actor(NAME)._actor_id

    client = Client(url, TEST_TOKEN)
    try:
        ns = f"stuck-{uuid.uuid4().hex[:6]}"
        held.namespace = ns
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        assert held.held.wait(30), "the ServiceAccount controller never wrote into the new namespace"

        # reported: the health answer names the loop whose step does not end
        stuck = wait_for(lambda: (s := launch.health(NAME)) and not s["healthy"] and "pid" in s and s, 30)
        assert "serviceaccounts-worker: one step running" in stuck["detail"], stuck
        assert stuck["pid"] == first["pid"]

        # restarted: the actor's process exits by itself; Ray keeps the same actor with a new process
        assert wait_for(lambda: not _alive(first["pid"]), 30), "the stuck actor's process did not exit"
        held.release.set()  # the storage answers again
        again = wait_for(lambda: (s := launch.health(NAME))["healthy"] and s["pid"] != first["pid"] and s, START_S)
        assert again["detail"] == ""
        assert ray.get_actor(NAME)._actor_id == actor_id  # restarted by Ray, not created anew

        # resumed: the new process does the work the stuck one could not
        sa = wait_for(lambda: _get_or_none(client, "ServiceAccount", "default", ns), 60)
        assert sa.metadata.name == "default"
    finally:
        held.namespace = None
        with contextlib.suppress(Exception):
            client.delete("Namespace", ns, None)
        client.close()


def _get_or_none(client: Any, kind: str, name: str, namespace: str) -> Any:
    from minik8s.errors import NotFound

    try:
        return client.get(kind, name, namespace)
    except NotFound:
        return None
