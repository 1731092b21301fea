"""The kubelet's NetworkPolicy agent against the real API server (etcd) and a real dockerd: a pod's table is in
its sandbox's network namespace before its first app container starts, and follows policy changes."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import errors
from minik8s.kubelet.kubelet import Kubelet, KubeletConfig
from minik8s.netpol import rules
from tests.conftest import free_port, kubelet_tls, seed_service_account_objects, uniq, wait_for
from tests.integration.test_kubelet_runtime import IMAGE, PAUSE_COMMAND, dockerd, pytestmark  # noqa: F401

START_S = 30.0
SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done']
CHANGE_S = 10.0


@pytest.fixture
def kubelet(dockerd: Any, client: Any, test_pki: Any) -> Iterator[Kubelet]:  # noqa: F811 (the fixture above)
    node = f"np-{uuid.uuid4().hex[:6]}"
    cfg = KubeletConfig(node_name=node, node_ip="127.0.0.1", pod_cidr="10.246.2.0/24", pods_dir=dockerd.root / "np",
                        pause_image=IMAGE, pause_command=PAUSE_COMMAND, heartbeat_seconds=1, resync_seconds=5,
                        backoff_base_seconds=0.5, backoff_cap_seconds=2, server_port=free_port(),
                        **kubelet_tls(test_pki, dockerd.root, node))
    k = Kubelet(cfg, client, dockerd, policy_client=client)
    th = threading.Thread(target=k.run, daemon=True)
    th.start()
    yield k
    k.stop()
    th.join(10)
    # its Node holds the pod CIDR the next test's kubelet asks for (one API server serves the session)
    with contextlib.suppress(errors.NotFound):
        client.delete("Node", node, None)


def sandbox_pid(docker_client: Any, uid: str) -> int:
    found = docker_client.containers.list(filters={"label": [f"io.kubernetes.pod.uid={uid}",
                                                             "io.minik8s.container.type=sandbox"]})
    return int(found[0].attrs["State"]["Pid"]) if found else 0


def table(pid: int) -> str:
    res = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "list", "table", "inet", rules.TABLE],
                         capture_output=True, text=True, timeout=10)
    return res.stdout if res.returncode == 0 else ""


def started_at(docker_client: Any, uid: str) -> float:
    app = docker_client.containers.list(filters={"label": [f"io.kubernetes.pod.uid={uid}",
                                                           "io.minik8s.container.type=container"]})[0]
    text = app.attrs["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    return dt.datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()


def test_table_is_written_before_the_app_starts_and_follows_changes(kubelet: Kubelet, client: Any,
                                                                     dockerd: Any) -> None:  # noqa: F811
    ns = uniq("np")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    seed_service_account_objects(client, ns)
    client.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "deny", "namespace": ns}, "spec": {"podSelector": {}}})
    agent = kubelet.policy_agent
    assert agent is not None
    wait_for(lambda: agent.informers["NetworkPolicy"].get(f"{ns}/deny"), START_S)
    writes: list[tuple[str, float]] = []
    apply = agent._apply

    def recording(netns: str, text: str) -> None:
        apply(netns, text)
        writes.append((netns, time.time()))

    agent._apply = recording
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": ns},
                   "spec": {"nodeName": kubelet.config.node_name, "terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "main", "image": "busybox",
                                            "command": SLEEPER}]}})
    pod = wait_for(lambda: (p := client.get("Pod", "web", ns)).status and p.status.phase == "Running" and p, START_S)
    uid = pod.metadata.uid
    pid = sandbox_pid(dockerd, uid)
    assert "policy drop" in table(pid)
    first = min(at for netns, at in writes if netns == f"/proc/{pid}/ns/net")
    assert first <= started_at(dockerd, uid)

    client.delete("NetworkPolicy", "deny", ns)
    wait_for(lambda: "policy drop" not in table(pid) and "hook input" in table(pid), CHANGE_S)
    client.delete("Pod", "web", ns)
