"""A Kubelet against the real API server (etcd) and a real dockerd: node, lease, pod lifecycle, logs, exec."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from minik8s import errors
from minik8s.auth import x509
from minik8s.kubelet.kubelet import Kubelet, KubeletConfig
from minik8s.pki import issue
from tests.conftest import free_port, kubelet_tls, seed_service_account_objects
from tests.integration.test_kubelet_runtime import IMAGE, PAUSE_COMMAND, dockerd, pytestmark  # noqa: F401

TOKEN = "kubelet-test-token"
TIMEOUT = 20.0


def until(fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except errors.NotFound:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out; last value {last!r}")


@pytest.fixture
def kubelet(dockerd: Any, client: Any, test_pki: Any) -> Iterator[Kubelet]:  # noqa: F811 (the fixture above)
    node = f"kl-{uuid.uuid4().hex[:6]}"
    cfg = KubeletConfig(node_name=node, node_ip="127.0.0.1", pod_cidr="10.246.2.0/24", pods_dir=dockerd.root / "kp",
                        pause_image=IMAGE, pause_command=PAUSE_COMMAND, heartbeat_seconds=1, resync_seconds=5,
                        backoff_base_seconds=0.5, backoff_cap_seconds=2, server_port=free_port(),
                        **kubelet_tls(test_pki, dockerd.root, node))
    seed_service_account_objects(client)  # pods get a token volume: the controllers' part
    k = Kubelet(cfg, client, dockerd)
    th = threading.Thread(target=k.run, daemon=True)
    th.start()
    yield k
    k.stop()
    th.join(10)
    # its Node holds the pod CIDR the next test's kubelet asks for (one API server serves the session)
    with contextlib.suppress(errors.NotFound):
        client.delete("Node", node, None)


def test_kubelet_runs_pod_and_reports(kubelet: Kubelet, client: Any, test_pki: Any) -> None:
    node_name = kubelet.config.node_name
    node = until(lambda: client.get("Node", node_name, None))
    assert node.spec.podCIDR == "10.246.2.0/24"
    conds = until(lambda: {c.type: c.status for c in (client.get("Node", node_name, None).status.conditions or [])})
    assert conds["Ready"] == "True" and conds["MemoryPressure"] == "False"
    assert node.status.nodeInfo.containerRuntimeVersion.startswith("docker://20.10")
    assert node.status.daemonEndpoints.kubeletEndpoint.Port == kubelet.config.server_port
    lease = until(lambda: client.get("Lease", node_name, "kube-node-lease"))
    assert lease.spec.holderIdentity == node_name

    name = f"p-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 5, "containers": [
                       {"name": "main", "image": "busybox",
                        "command": ["sh", "-c", 'echo started; trap "exit 0" TERM; while :; do sleep 0.2; done']}]}})
    pod = until(lambda: (p := client.get("Pod", name)).status.phase == "Running" and p.status.podIP and p)
    assert pod.status.podIP.startswith("10.246.2.")
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"

    base = f"https://127.0.0.1:{kubelet.config.server_port}"
    ca = test_pki.ca_pem()
    anonymous = httpx.Client(verify=x509.client_context(ca))
    as_apiserver = httpx.Client(verify=x509.client_context(ca, str(test_pki.kubelet_client_cert),
                                                           str(test_pki.kubelet_client_key)))
    # a node's client certificate from the same CA: verified, but not the API server's identity
    node_key, node_cert = Path(kubelet.config.pods_dir) / "node.key", Path(kubelet.config.pods_dir) / "node.crt"
    issue(test_pki, node_key, node_cert, f"system:node:{node_name}", ["system:nodes"])
    as_node = httpx.Client(verify=x509.client_context(ca, str(node_cert), str(node_key)))
    logs_url = f"{base}/containerLogs/default/{name}/main"
    assert anonymous.get(logs_url).status_code == 401
    assert anonymous.get(logs_url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    refused = as_node.get(logs_url)
    assert refused.status_code == 403 and f"system:node:{node_name}" in refused.json()["message"]
    assert anonymous.get(f"{base}/healthz").status_code == 200
    logs = as_apiserver.get(logs_url, params={"tailLines": 10})
    assert logs.status_code == 200 and logs.text == "started\n"
    ex = as_apiserver.post(f"{base}/exec/default/{name}/main", json={"command": ["sh", "-c", "echo $HOSTNAME"]})
    assert ex.json() == {"exitCode": 0, "output": f"{name}\n"}
    assert as_apiserver.get(f"{base}/containerLogs/default/nosuch/main").status_code == 404
    # and through the API server, which calls the kubelet over TLS with its client certificate
    via_api = httpx.get(f"{client.server}/api/v1/namespaces/default/pods/{name}/log",
                        headers={"Authorization": f"Bearer {client.token}"})
    assert via_api.status_code == 200 and via_api.text == "started\n"

    events = until(lambda: [e.reason for e in client.list("Event", "default").items
                            if e.involvedObject.name == name and e.reason == "Started"])
    assert events

    client.delete("Pod", name, grace_period_seconds=5)
    until(lambda: not [p for p in client.list("Pod", "default").items if p.metadata.name == name])
    uid = pod.metadata.uid
    assert uid not in kubelet.runtime.list_pod_uids()



def test_disk_empty_dir_over_its_size_limit_gets_the_pod_evicted(kubelet: Kubelet, client: Any) -> None:
    node_name = kubelet.config.node_name
    until(lambda: client.get("Node", node_name, None))
    name = f"fill-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": node_name, "terminationGracePeriodSeconds": 0,
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "64Ki"}}],
        "containers": [{"name": "main", "image": "busybox", "volumeMounts": [{"name": "scratch", "mountPath": "/s"}],
                        "command": ["sh", "-c", "dd if=/dev/zero of=/s/f bs=1024 count=1024; "
                                                'trap "exit 0" TERM; while :; do sleep 0.2; done']}]}})
    pod = until(lambda: (p := client.get("Pod", name)).status.phase == "Running" and p)
    # the kubelet's periodic check (every 10 s by default), run here at once on its cached pod
    assert until(lambda: (cached := kubelet.informer.get(f"default/{name}")) is not None
                 and kubelet.check_emptydir_limits(cached))
    failed = until(lambda: (p := client.get("Pod", name)).status.phase == "Failed" and p)
    assert failed.status.reason == "Evicted"
    assert failed.status.message == 'Usage of EmptyDir volume "scratch" exceeds the limit "64Ki". '
    until(lambda: pod.metadata.uid not in kubelet.runtime.list_pod_uids())
    assert client.get("Pod", name).status.phase == "Failed"  # evicted pods stay, as in Kubernetes
    client.delete("Pod", name, grace_period_seconds=0)
