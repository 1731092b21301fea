"""A Kubelet against the real API server (etcd) and a real dockerd: node, lease, pod lifecycle, logs, exec."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from minik8s import errors
from minik8s.kubelet.kubelet import Kubelet, KubeletConfig
from tests.conftest import free_port
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
def kubelet(dockerd: Any, client: Any) -> Iterator[Kubelet]:  # noqa: F811 (the fixture imported above)
    node = f"kl-{uuid.uuid4().hex[:6]}"
    cfg = KubeletConfig(node_name=node, node_ip="127.0.0.1", pod_cidr="10.246.2.0/24", pods_dir=dockerd.root / "kp",
                        pause_image=IMAGE, pause_command=PAUSE_COMMAND, heartbeat_seconds=1, resync_seconds=5,
                        backoff_base_seconds=0.5, backoff_cap_seconds=2, server_port=free_port(), api_token=TOKEN)
    k = Kubelet(cfg, client, dockerd)
    th = threading.Thread(target=k.run, daemon=True)
    th.start()
    yield k
    k.stop()
    th.join(10)


def test_kubelet_runs_pod_and_reports(kubelet: Kubelet, client: Any) -> None:
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

    base = f"http://127.0.0.1:{kubelet.config.server_port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{base}/containerLogs/default/{name}/main").status_code == 401
    assert httpx.get(f"{base}/healthz").status_code == 200
    logs = httpx.get(f"{base}/containerLogs/default/{name}/main", headers=headers, params={"tailLines": 10})
    assert logs.status_code == 200 and logs.text == "started\n"
    ex = httpx.post(f"{base}/exec/default/{name}/main", headers=headers,
                    json={"command": ["sh", "-c", "echo $HOSTNAME"]})
    assert ex.json() == {"exitCode": 0, "output": f"{name}\n"}
    assert httpx.get(f"{base}/containerLogs/default/nosuch/main", headers=headers).status_code == 404

    events = until(lambda: [e.reason for e in client.list("Event", "default").items
                            if e.involvedObject.name == name and e.reason == "Started"])
    assert events

    client.delete("Pod", name, grace_period_seconds=5)
    until(lambda: not [p for p in client.list("Pod", "default").items if p.metadata.name == name])
    uid = pod.metadata.uid
    assert uid not in kubelet.runtime.list_pod_uids()
