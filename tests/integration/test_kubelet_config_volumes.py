"""A Kubelet against the real API server and a real dockerd: a changed Secret (and ConfigMap) reaches the
files a running container has mounted within 10 s, by the atomic symlink swap, without a restart."""

from __future__ import annotations

import time
import uuid
from typing import Any

from minik8s.kubelet import labels
from minik8s.kubelet.kubelet import Kubelet
from tests.integration.test_kubelet_apiserver import kubelet, until  # noqa: F401 (the fixture)
from tests.integration.test_kubelet_runtime import dockerd, pytestmark  # noqa: F401

#: Kubernetes' promise for a mounted ConfigMap or Secret after a change (the kubelet reads them every 3 s).
UPDATE_S = 10.0


def _container(docker: Any, pod: str) -> Any:
    found = docker.containers.list(filters={"label": [f"{labels.POD_NAME}={pod}", f"{labels.CONTAINER_NAME}=main"]})
    assert len(found) == 1, found
    return found[0]


def _cat(container: Any, path: str) -> str:
    result = container.exec_run(["cat", path])
    return str(result.output.decode()) if result.exit_code == 0 else f"<exit {result.exit_code}>"


def test_a_changed_secret_and_configmap_reach_the_running_container(kubelet: Kubelet, client: Any,  # noqa: F811
                                                                   dockerd: Any) -> None:  # noqa: F811
    node = kubelet.config.node_name
    until(lambda: client.get("Node", node, None))
    tag = uuid.uuid4().hex[:6]
    sec, cm, name = f"sec-{tag}", f"cm-{tag}", f"live-{tag}"
    client.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": sec},
                   "stringData": {"PASSWORD": "one", "token": "abc"}})
    client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm}, "data": {"level": "1"}})
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": node, "terminationGracePeriodSeconds": 0,
        "volumes": [{"name": "sec", "secret": {"secretName": sec, "defaultMode": 0o400}},
                    {"name": "cfg", "configMap": {"name": cm}}],
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "while :; do sleep 1; done"],
                        "volumeMounts": [{"name": "sec", "mountPath": "/etc/sec"},
                                         {"name": "cfg", "mountPath": "/etc/cfg"}]}]}})
    try:
        until(lambda: client.get("Pod", name).status.phase == "Running", 60)
        container = _container(dockerd, name)
        assert _cat(container, "/etc/sec/PASSWORD") == "one" and _cat(container, "/etc/cfg/level") == "1"

        client.patch("Secret", sec, {"stringData": {"PASSWORD": "two"}})
        changed_at = time.monotonic()
        until(lambda: _cat(container, "/etc/sec/PASSWORD") == "two", UPDATE_S)
        assert time.monotonic() - changed_at <= UPDATE_S
        assert _cat(container, "/etc/sec/token") == "abc"
        assert container.exec_run(["stat", "-L", "-c", "%a", "/etc/sec/PASSWORD"]).output.decode().strip() == "400"

        client.patch("ConfigMap", cm, {"data": {"level": "2"}})
        until(lambda: _cat(container, "/etc/cfg/level") == "2", UPDATE_S)

        assert _container(dockerd, name).id == container.id  # the same container, never restarted
        assert client.get("Pod", name).status.containerStatuses[0].restartCount == 0
    finally:
        client.delete("Pod", name, grace_period_seconds=0)
        until(lambda: not [p for p in client.list("Pod", "default").items if p.metadata.name == name])
        client.delete("Secret", sec)
        client.delete("ConfigMap", cm)
