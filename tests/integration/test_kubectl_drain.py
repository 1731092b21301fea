"""`kubectl drain` itself against a real etcd + apiserver (no cluster): it finds the Eviction subresource by
discovery, is refused with 429 while a PodDisruptionBudget allows nothing, and evicts once it allows one.

client-go never sends a bearer token over plain HTTP, so this module runs its own apiserver without
auth on the shared etcd (tests/e2e/test_scheduling_policies.py drives the same over TLS on a cluster).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from minik8s.controllers.disruption import DisruptionConfig, DisruptionController
from minik8s.errors import NotFound
from tests.conftest import open_apiserver, uniq, wait_for, write_kubeconfig
from tests.integration.test_disruption import pdb_status, ready_pod
from tests.integration.test_scheduler_loop import make_node

WAIT_S = 15.0


@pytest.fixture(scope="module")
def server(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Client]]:
    with open_apiserver(etcd_endpoint, "drain-apiserver") as url:
        path = write_kubeconfig(tmp_path_factory.mktemp("kubectl") / "kc", url)
        client = Client(url, None)
        ctl = DisruptionController(client, DisruptionConfig(resync_s=60.0))
        ctl.start()
        yield path, client
        ctl.stop()
        client.close()


def kubectl(kc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=90)


def test_kubectl_drain_goes_through_eviction(server: tuple[Path, Client]) -> None:
    kc, client = server
    ns = uniq("drain")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    node = f"{ns}-node"
    make_node(client, node, "1Gi")
    app = {"app": ns}
    try:
        ready_pod(client, ns, "a", app)
        client.patch("Pod", "a", {"spec": {"nodeName": node}}, ns)
        client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                       "metadata": {"name": "b", "namespace": ns},
                       "spec": {"minAvailable": 1, "selector": {"matchLabels": app}}})
        wait_for(lambda: pdb_status(client, ns, "b").get("observedGeneration"), WAIT_S)
        args = ("drain", node, "--ignore-daemonsets", "--force", f"--pod-selector=app={ns}", "--grace-period=0")
        blocked = kubectl(kc, *args, "--timeout=7s")
        assert blocked.returncode != 0
        assert "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget." \
            in blocked.stderr, blocked.stderr
        assert "node/" + node + " cordoned" in blocked.stdout
        assert client.get("Pod", "a", ns).metadata.deletionTimestamp is None

        ready_pod(client, ns, "b2", app)
        wait_for(lambda: pdb_status(client, ns, "b")["disruptionsAllowed"] == 1, WAIT_S)
        done = kubectl(kc, *args, "--timeout=30s")
        assert done.returncode == 0, done.stderr
        assert "pod/a evicted" in done.stdout and f"node/{node} drained" in done.stdout
        with pytest.raises(NotFound):
            client.get("Pod", "a", ns)
    finally:
        client.delete("Node", node, None)
        client.delete("Namespace", ns, None)
