"""The shared informer factory against a real etcd + API server: one watch per kind per process.

A thin ASGI wrapper in front of a real API server counts the watch requests per path; the
controller-manager (every controller, with the factory) must open one Pod watch, and its
controllers must still work (a ReplicaSet gets its pods).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client
from minik8s.client import Informer, InformerFactory
from minik8s.controllers.manager import ControllerManager
from minik8s.controllers.replicaset import ReplicaSetController
from tests.conftest import TEST_TOKEN, free_port, uniq, wait_for

WAIT_S = 30.0


class WatchCounter:
    """ASGI middleware: counts GET ...?watch=true requests by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.watches: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and b"watch=true" in scope.get("query_string", b""):
            with self._lock:
                self.watches[scope["path"]] += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def counted(etcd_endpoint: str) -> Iterator[tuple[str, WatchCounter]]:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                                    pod_cidr="10.0.0.0/8"))
    counter = WatchCounter(api.app)
    server = ServerThread(counter, ["127.0.0.1"], port, name="counted-apiserver")
    server.start()
    yield f"http://127.0.0.1:{port}", counter
    server.stop()


def _rs(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def test_controller_manager_opens_one_watch_per_kind(counted: tuple[str, WatchCounter]) -> None:
    url, counter = counted
    client = Client(url, TEST_TOKEN)
    manager = ControllerManager(client)
    counter.watches.clear()
    manager.start()
    try:
        assert manager.informers.wait_synced(WAIT_S)
        wait_for(lambda: counter.watches["/api/v1/pods"] >= 1, WAIT_S)
        kinds = {inf.kind for inf in manager.informers.informers()}
        assert {"Pod", "ReplicaSet", "Deployment", "Service", "Endpoints", "Node"} <= kinds
        # several controllers follow Pods (replicaset, deployment, endpoints, node lifecycle, gc): one watch
        assert counter.watches["/api/v1/pods"] == 1, counter.watches
        assert all(n == 1 for n in counter.watches.values()), counter.watches
        ns = uniq("inf")
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        client.create(_rs("web", ns, 2))
        wait_for(lambda: len(client.list("Pod", ns, "app=web").items) == 2, WAIT_S)
        assert counter.watches["/api/v1/pods"] == 1, counter.watches
    finally:
        manager.stop()
        client.close()


def test_controller_without_factory_still_works(counted: tuple[str, WatchCounter]) -> None:
    """The older constructor style (no factory): the controller opens its own informers."""
    url, counter = counted
    client = Client(url, TEST_TOKEN)
    rs = ReplicaSetController(client)
    rs.start()
    try:
        ns = uniq("old")
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        client.create(_rs("db", ns, 1))
        wait_for(lambda: len(client.list("Pod", ns, "app=db").items) == 1, WAIT_S)
    finally:
        rs.stop()
        client.close()


def test_factory_shares_and_late_handlers_see_the_cache(client: Client) -> None:
    factory = InformerFactory(client, resync_seconds=60.0)
    pods = factory.informer("pods")
    assert factory.informer("Pod") is pods and factory.informer("po") is pods
    assert factory.informer("Pod", namespace="kube-system") is not pods
    assert factory.informer("Pod", resync_seconds=5.0) is pods and pods.resync_seconds == 5.0
    ns = uniq("late")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    factory.start()
    try:
        assert factory.wait_synced(WAIT_S)
        seen: list[str] = []
        pods.add_handler(on_add=lambda o: seen.append(f"{o.metadata.namespace}/{o.metadata.name}"))
        assert f"{ns}/p" in seen  # replayed at once: it was in the cache before the handler came
    finally:
        factory.stop()


def test_shared_informer_stops_with_its_last_user(client: Client) -> None:
    inf = Informer(client, "Namespace")
    inf.start()
    inf.start()
    inf.stop()
    assert not inf._stop.is_set()  # one user left
    inf.stop()
    assert inf._stop.is_set()
