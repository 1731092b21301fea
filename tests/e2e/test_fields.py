"""Fields that must do what Kubernetes 1.32 does, driven with kubectl on a real cluster (no silent fields):
emptyDir `medium: Memory` is a sized tmpfs, a disk emptyDir over its `sizeLimit` gets the pod Evicted,
`metadata.finalizers` keep a deleted object until they are removed, `progressDeadlineSeconds` makes a
stuck rollout fail, and a NoExecute taint evicts pods that do not tolerate it at once and tolerating
ones after their `tolerationSeconds`.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import kubectl, run, unique, wait_for

NODES = ("node-1", "node-2", "node-3")
TOLERATION_S = 30
#: The kubelet checks emptyDir usage every 10 s; then the pod is written Failed.
EVICTION_TIMEOUT_S = 90.0


def get(kc: Path, ns: str, *what: str) -> Any:
    return json.loads(kubectl(kc, "-n", ns, "get", *what, "-o", "json").stdout)


def phase(kc: Path, ns: str, pod: str) -> str | None:
    return (get(kc, ns, "pod", pod).get("status") or {}).get("phase")


def apply(kc: Path, ns: str, manifest: str) -> None:
    kubectl(kc, "-n", ns, "apply", "-f", "-", input=textwrap.dedent(manifest))


def pod_with_volume(name: str, volume: str, command: str) -> str:
    return f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 0
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
            command: [sh, -c, '{command}']
            volumeMounts: [{{name: vol, mountPath: /vol}}]
          volumes:
          - name: vol
            emptyDir: {volume}
        """


def test_memory_empty_dir_is_a_tmpfs_of_its_size_limit(kubeconfig: Path, ns: str) -> None:
    name = unique("shm")
    apply(kubeconfig, ns, pod_with_volume(name, "{medium: Memory, sizeLimit: 16Mi}", "sleep 3600"))
    wait_for(f"{name} running", lambda: phase(kubeconfig, ns, name) == "Running", timeout=90)
    mounts = kubectl(kubeconfig, "-n", ns, "exec", name, "--", "cat", "/proc/mounts").stdout
    line = next((m for m in mounts.splitlines() if m.split()[1:2] == ["/vol"]), "")
    assert line.split()[2:3] == ["tmpfs"], mounts
    assert "size=16384k" in line, line
    df = kubectl(kubeconfig, "-n", ns, "exec", name, "--", "df", "-k", "/vol").stdout
    assert df.splitlines()[-1].split()[1] == "16384", df  # 1K-blocks: 16 MiB


def test_disk_empty_dir_over_its_size_limit_evicts_the_pod(kubeconfig: Path, ns: str) -> None:
    name = unique("fill")
    apply(kubeconfig, ns, pod_with_volume(
        name, "{sizeLimit: 1Mi}", "dd if=/dev/zero of=/vol/fill bs=1024 count=4096 && sleep 3600"))

    def evicted() -> dict[str, Any] | None:
        status = get(kubeconfig, ns, "pod", name).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(f"{name} evicted", evicted, timeout=EVICTION_TIMEOUT_S)
    assert status.get("reason") == "Evicted", status
    assert '"vol"' in status.get("message", "") and "1Mi" in status["message"], status


def test_finalizer_keeps_a_deleted_object_until_it_is_removed(kubeconfig: Path, ns: str) -> None:
    name = unique("held")
    kubectl(kubeconfig, "-n", ns, "create", "configmap", name, "--from-literal=a=b")
    kubectl(kubeconfig, "-n", ns, "patch", "configmap", name, "--type", "merge",
            "-p", '{"metadata": {"finalizers": ["e2e.minik8s.io/hold"]}}')
    try:
        kubectl(kubeconfig, "-n", ns, "delete", "configmap", name, "--wait=false")
        held = get(kubeconfig, ns, "configmap", name)
        assert held["metadata"].get("deletionTimestamp"), held
        assert held["metadata"]["finalizers"] == ["e2e.minik8s.io/hold"]
        assert held["data"] == {"a": "b"}
        late = kubectl(kubeconfig, "-n", ns, "patch", "configmap", name, "--type", "merge", "-p",
                       '{"metadata": {"finalizers": ["e2e.minik8s.io/hold", "e2e.minik8s.io/late"]}}', check=False)
        assert late.returncode != 0 and "finalizers" in late.stderr, late.stderr
        kubectl(kubeconfig, "-n", ns, "patch", "configmap", name, "--type", "json",
                "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
        gone = kubectl(kubeconfig, "-n", ns, "get", "configmap", name, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr
    finally:  # never leave the test's namespace Terminating for ever
        kubectl(kubeconfig, "-n", ns, "patch", "configmap", name, "--type", "merge",
                "-p", '{"metadata": {"finalizers": null}}', check=False)


def test_stuck_rollout_exceeds_its_progress_deadline(kubeconfig: Path, ns: str) -> None:
    name = unique("stuck")
    apply(kubeconfig, ns, f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 1
          progressDeadlineSeconds: 10
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 0
              containers:
              - name: main
                image: busybox
                command: [sleep, "3600"]
                readinessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1}}
        """)

    def exceeded() -> dict[str, Any] | None:
        conds = (get(kubeconfig, ns, "deployment", name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"),
                    None)

    cond = wait_for(f"{name} ProgressDeadlineExceeded", exceeded, timeout=90)
    assert cond["status"] == "False", cond
    out = run("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout", "30", check=False)
    assert out.returncode == 1 and "exceeded its progress deadline" in out.stderr, (out.stdout, out.stderr)
    out = kubectl(kubeconfig, "-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=30s", check=False)
    assert out.returncode != 0 and "exceeded its progress deadline" in out.stderr, (out.stdout, out.stderr)


def quietest_node(kc: Path) -> str:
    """The node running the fewest pods (a NoExecute taint evicts every pod there that does not tolerate it,
    the gateway's and other tests' leftovers included)."""
    pods = json.loads(kubectl(kc, "get", "pods", "-A", "-o", "json").stdout)["items"]
    load = {node: 0 for node in NODES}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in load:
            load[node] += 1
    return min(NODES, key=lambda n: (load[n], n))


def _pod_on_tainted_node(name: str, node: str, toleration: str) -> str:
    return f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 0
          nodeSelector: {{kubernetes.io/hostname: {node}}}
          tolerations: [{toleration}]
          containers:
          - name: main
            image: busybox
            command: [sleep, "3600"]
        """


def test_no_execute_taint_evicts_at_once_or_after_toleration_seconds(kubeconfig: Path, ns: str) -> None:
    key = unique("e2e-evict")
    intolerant, patient = unique("intolerant"), unique("patient")
    node = quietest_node(kubeconfig)
    apply(kubeconfig, ns, _pod_on_tainted_node(intolerant, node, ""))
    apply(kubeconfig, ns, _pod_on_tainted_node(
        patient, node, f"{{key: {key}, operator: Exists, effect: NoExecute, tolerationSeconds: {TOLERATION_S}}}"))
    for pod in (intolerant, patient):
        wait_for(f"{pod} running", lambda pod=pod: phase(kubeconfig, ns, pod) == "Running", timeout=90)

    def leaving(pod: str) -> bool:
        got = kubectl(kubeconfig, "-n", ns, "get", "pod", pod, "-o", "json", check=False)
        return got.returncode != 0 or bool(json.loads(got.stdout)["metadata"].get("deletionTimestamp"))

    kubectl(kubeconfig, "taint", "node", node, f"{key}=x:NoExecute")
    tainted_at = time.monotonic()
    try:
        wait_for(f"{intolerant} evicted", lambda: leaving(intolerant), timeout=TOLERATION_S - 10)
        assert not leaving(patient), "the tolerating pod was evicted before its tolerationSeconds"
        wait_for(f"{patient} evicted after {TOLERATION_S}s", lambda: leaving(patient), timeout=TOLERATION_S + 30)
        # timeAdded has a one-second resolution: allow that much early
        assert time.monotonic() - tainted_at >= TOLERATION_S - 2
    finally:
        kubectl(kubeconfig, "taint", "node", node, f"{key}:NoExecute-", check=False)
