"""HPA controller in-process against the real API server; pod metrics injected through the kubelets'
report endpoint (metrics.k8s.io), pods made Ready by the fake kubelet of the workloads tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client
from minik8s.controllers.hpa import HPAConfig, HPAController
from minik8s.errors import MiniK8sError
from minik8s.metrics.types import GROUP_VERSION, REPORT_PATH
from tests.integration.test_workloads import live_pods, namespace_with_fake_kubelet, running_controllers, wait_for

UP_PERIOD_S = 3
MAX = 4


class Load:
    """Reports every live pod of the namespace at `millicores` of CPU, as a kubelet would."""

    def __init__(self, client: Client, ns: str) -> None:
        self.client, self.ns, self.millicores = client, ns, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            pods = [{"metadata": {"name": p.metadata.name, "namespace": self.ns, "labels": p.metadata.labels},
                     "timestamp": "2026-01-01T00:00:00Z", "window": "1s",
                     "containers": [{"name": "main", "usage": {"cpu": f"{self.millicores}m", "memory": "10Mi"}}]}
                    for p in live_pods(self.client, self.ns)]
            self.client.request("PUT", REPORT_PATH.format(node="fake-node"), json={"pods": pods})

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def controllers(apiserver: str) -> Iterator[None]:
    from minik8s.controllers.deployment import DeploymentController
    from minik8s.controllers.replicaset import ReplicaSetController

    hpa = HPAConfig(sync_period_s=0.5, cpu_initialization_s=0, initial_readiness_delay_s=0)
    with running_controllers(apiserver, lambda c: [ReplicaSetController(c), DeploymentController(c),
                                                   HPAController(c, hpa)]):
        yield


@pytest.fixture
def ns(client: Client, controllers: None) -> Iterator[str]:
    with namespace_with_fake_kubelet(client, "hpa") as name:
        yield name


def web(ns: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{
                    "name": "main", "image": "busybox:v1", "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "100m"}}}]}}}}


def hpa(ns: str, **spec: Any) -> dict[str, Any]:
    body = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": MAX,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
                {"type": "Pods", "value": 1, "periodSeconds": UP_PERIOD_S}]},
                "scaleDown": {"stabilizationWindowSeconds": 2, "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 1}]}}}
    body.update(spec)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": ns}, "spec": body}


def test_hpa_scales_out_at_policy_rate_caps_at_max_and_back_in(client: Client, ns: str) -> None:
    client.create(web(ns))
    client.create(hpa(ns))
    seen: list[tuple[float, int]] = []

    def replicas() -> int:
        n = int(client.get("Deployment", "web", ns).spec.replicas)
        if not seen or seen[-1][1] != n:
            seen.append((time.monotonic(), n))
        return n

    with Load(client, ns) as load:
        load.millicores = 150  # 150% of the 100m request vs a 50% target: wants 3× per round
        wait_for("scale out to max", lambda: replicas() == MAX, timeout=30)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # load stays high: never beyond max
            assert replicas() <= MAX
            time.sleep(0.2)
        steps = [n for _, n in seen]
        assert steps == [1, 2, 3, 4], f"scale-up not one pod at a time: {seen}"
        scaled_at = [t for t, _ in seen[1:]]  # seen[0] is the initial observation, not a scale
        for t0, t1 in zip(scaled_at, scaled_at[1:], strict=False):
            assert t1 - t0 >= UP_PERIOD_S - 1, f"scale-up faster than 1 pod per {UP_PERIOD_S}s: {seen}"
        def capped() -> dict[str, Any] | None:  # the first sync at max replicas says why it stops there
            h = client.get("HorizontalPodAutoscaler", "web", ns).to_dict()
            conds = {c["type"]: c for c in h["status"].get("conditions") or []}
            return h if conds.get("ScalingLimited", {}).get("reason") == "TooManyReplicas" else None

        h = wait_for("ScalingLimited: TooManyReplicas", capped, timeout=30)
        assert h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 150
        assert h["status"]["lastScaleTime"]

        load.millicores = 5  # 5% of request: back to min after the 2 s stabilization window
        wait_for("scale in to min", lambda: replicas() == 1, timeout=30)

    def messages() -> set[str]:
        return {e.message for e in client.list("Event", ns).items if e.reason == "SuccessfulRescale"}

    wait_for("scale-in event", lambda: "New size: 1; reason: All metrics below target" in messages())
    assert "New size: 2; reason: cpu resource utilization (percentage of request) above target" in messages()
    served = client.request("GET", f"/apis/{GROUP_VERSION}/namespaces/{ns}/pods")
    assert served["kind"] == "PodMetricsList"


def test_metrics_api_is_discoverable_and_shaped_like_kubernetes(client: Client, ns: str) -> None:
    groups = [g["name"] for g in client.request("GET", "/apis")["groups"]]
    assert "metrics.k8s.io" in groups and "autoscaling" in groups
    res = client.request("GET", f"/apis/{GROUP_VERSION}")
    assert {r["name"] for r in res["resources"]} == {"nodes", "pods"}
    body = {"node": {"timestamp": "2026-01-01T00:00:00Z", "window": "15s",
                     "usage": {"cpu": "250000000n", "memory": "1024Ki"}},
            "pods": [{"metadata": {"name": "p", "namespace": ns}, "timestamp": "2026-01-01T00:00:00Z",
                      "window": "15s", "containers": [{"name": "c", "usage": {"cpu": "1000000n",
                                                                              "memory": "2048Ki"}}]}]}
    client.request("PUT", REPORT_PATH.format(node="metrics-node"), json=body)
    nm = client.request("GET", f"/apis/{GROUP_VERSION}/nodes/metrics-node")
    assert nm["kind"] == "NodeMetrics" and nm["usage"]["cpu"] == "250000000n" and nm["window"] == "15s"
    pm = client.request("GET", f"/apis/{GROUP_VERSION}/namespaces/{ns}/pods/p")
    assert pm["containers"] == [{"name": "c", "usage": {"cpu": "1000000n", "memory": "2048Ki"}}]
    with pytest.raises(Exception, match="not found"):
        client.request("GET", f"/apis/{GROUP_VERSION}/namespaces/{ns}/pods/nope")


def test_invalid_hpa_is_rejected_and_nothing_is_stored(client: Client, ns: str) -> None:
    with pytest.raises(MiniK8sError) as err:
        client.create(hpa(ns, minReplicas=3, maxReplicas=2))
    assert err.value.code == 422 and "spec.maxReplicas" in err.value.message
    with pytest.raises(MiniK8sError) as err:
        client.create(hpa(ns, metrics=[{"type": "Resource", "resource": {"name": "gpu", "target": {
            "type": "Utilization", "averageUtilization": 5}}}]))
    assert "spec.metrics[0].resource.name" in err.value.message
    assert client.list("HorizontalPodAutoscaler", ns).items == []
