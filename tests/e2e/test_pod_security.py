"""Security on the real cluster: Pod Security levels, subPath symlinks, Secrets at rest, the audit log.

Driven as users drive it: `minik8s apply`, kubectl, `minik8s audit tail`; etcd is read directly (the
way an attacker holding its data would) to show that no Secret lies there in plaintext.
"""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyetcd.etcdrpc import rpc_pb2 as rpc

from minik8s import Client
from tests.e2e.conftest import run, unique, wait_for

PRIVILEGED_LABEL = "pod-security.kubernetes.io/enforce"
ETCD_TIMEOUT_S = 5


def kubectl(kc: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def namespace(cluster: None) -> Iterator[str]:
    """A fresh namespace with no Pod Security label (so `baseline`), deleted afterwards."""
    name = unique("psa")
    run("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
    yield name
    run("delete", "namespace", name, check=False)


def privileged_pod(name: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 0
          containers:
          - name: main
            image: busybox
            command: [sleep, "3600"]
            securityContext: {{privileged: true}}
        """)


def wait_ready(client: Client, name: str, namespace: str) -> Any:
    def ready() -> Any:
        pod = client.get("Pod", name, namespace)
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        return pod.status and pod.status.phase == "Running" and statuses and all(s.ready for s in statuses)

    return wait_for(f"pod {namespace}/{name} running and ready", ready, timeout=90)


def waiting(client: Client, name: str, namespace: str, container: str) -> Any:
    pod = client.get("Pod", name, namespace)
    for s in (pod.status.containerStatuses if pod.status else None) or []:
        if s.name == container and s.state and s.state.waiting and s.state.waiting.message:
            return s.state.waiting
    return None


def test_privileged_pod_refused_in_baseline_namespace_accepted_in_privileged_one(
        client: Client, kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "priv.yaml"
    manifest.write_text(privileged_pod("priv"))
    expected = ('pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged '
                '(container "main" must not set securityContext.privileged=true)')
    refused = run("apply", "-f", str(manifest), "-n", namespace, check=False)
    assert refused.returncode != 0 and expected in refused.stderr, refused.stderr
    by_kubectl = kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    assert by_kubectl.returncode != 0 and expected in by_kubectl.stderr, by_kubectl.stderr
    assert "priv" not in run("get", "pods", "-n", namespace, "-o", "name").stdout  # nothing half-created

    # a workload is never refused: kubectl prints the warning, the pods its controller makes are refused
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "privdeploy"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "privdeploy"}}, "template": {
            "metadata": {"labels": {"app": "privdeploy"}},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                                     "securityContext": {"privileged": True}}]}}}}
    warned = kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: would violate PodSecurity "baseline:latest": privileged' in warned.stderr
    body["metadata"]["name"] = "privdeploy2"
    by_cli = run("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    assert 'Warning: would violate PodSecurity "baseline:latest": privileged' in by_cli.stderr

    run("label", "namespace", namespace, f"{PRIVILEGED_LABEL}=privileged")
    run("apply", "-f", str(manifest), "-n", namespace)  # admitted now
    assert client.get("Pod", "priv", namespace).spec.containers[0].securityContext.privileged is True
    # (whether it then runs is the machine's: where the host lacks a capability, runc cannot grant them all)
    host_net = privileged_pod("hostnet").replace("securityContext: {privileged: true}", "securityContext: {}")
    host_net = host_net.replace("spec:\n", "spec:\n  hostNetwork: true\n", 1)
    run("apply", "-f", "-", "-n", namespace, input=host_net)
    wait_ready(client, "hostnet", namespace)  # a pod only `privileged` admits, running
    links = run("exec", "hostnet", "-n", namespace, "--", "ip", "-o", "link").stdout
    assert "mk8s.vx" in links, links  # the node's VXLAN device: the pod is in the node's network namespace


def test_symlinked_subpath_is_refused_naming_it(client: Client, namespace: str) -> None:
    # `plant` puts `evil -> /` in the shared emptyDir (replacing the directory a first start of `main` may
    # have made); `main` mounts subPath `evil` and exits, so its restart resolves the symlink
    plant = "while :; do [ -L /data/evil ] || { rm -rf /data/evil; ln -s / /data/evil; }; sleep 0.2; done"
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: escape}}
        spec:
          terminationGracePeriodSeconds: 0
          volumes: [{{name: data, emptyDir: {{}}}}]
          containers:
          - name: plant
            image: busybox
            command: [sh, -c, '{plant}']
            volumeMounts: [{{name: data, mountPath: /data}}]
          - name: main
            image: busybox
            command: [sh, -c, "sleep 1; exit 1"]
            volumeMounts: [{{name: data, mountPath: /host, subPath: evil}}]
        """)
    run("apply", "-f", "-", "-n", namespace, input=manifest)

    def refused() -> Any:
        state = waiting(client, "escape", namespace, "main")
        return state if state and "subPath" in (state.message or "") else None

    state = wait_for("main refused", refused, timeout=120)
    assert state.reason == "CreateContainerError"
    assert 'subPath "evil": escapes its volume through symlink "evil" -> "/"' in state.message
    described = run("describe", "pod", "escape", "-n", namespace).stdout
    assert 'subPath "evil"' in described  # the Failed event says it too


def test_secrets_are_not_plaintext_in_etcd(kubeconfig: Path, namespace: str) -> None:
    from minik8s.cluster.config import ClusterConfig
    from minik8s.cluster.local import etcd_endpoints
    from minik8s.store import EtcdStore

    marker = f"plaintext-{unique('pw')}"
    # (`kubectl create secret` sends protobuf, which this API answers with 415: apply sends JSON)
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "data": {"password": base64.b64encode(marker.encode()).decode()}}
    created = kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    assert created.returncode == 0, created.stderr
    try:
        raw = EtcdStore(etcd_endpoints(ClusterConfig()))  # no encryption configured: the bytes etcd holds
        try:
            request = rpc.RangeRequest(key=f"/registry/secrets/{namespace}/creds".encode())
            kvs = raw._members.call("range", lambda m: m.kv.Range(request, ETCD_TIMEOUT_S)).kvs
        finally:
            raw.close()
        assert kvs, "the Secret is not in etcd where the API keeps it"
        value = kvs[0].value
        assert value.startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert marker.encode() not in value and base64.b64encode(marker.encode()) not in value
        assert b"password" not in value
        shown = kubectl(kubeconfig, "get", "secret", "creds", "-n", namespace, "-o", "yaml")
        assert shown.returncode == 0 and base64.b64encode(marker.encode()).decode() in shown.stdout
    finally:  # never leave an encrypted Secret behind for a cluster that may run without the key
        kubectl(kubeconfig, "delete", "secret", "creds", "-n", namespace)


def test_audit_tail_shows_writes_with_user_and_code(kubeconfig: Path, namespace: str) -> None:
    name = unique("audited")
    cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n"
    assert kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=cm).returncode == 0
    assert kubectl(kubeconfig, "delete", "configmap", name, "-n", namespace).returncode == 0
    refused = run("apply", "-f", "-", "-n", namespace, input=privileged_pod(name), check=False)
    assert refused.returncode != 0

    def events() -> list[dict[str, Any]]:
        out = run("audit", "tail", "-n", "500", "-o", "json").stdout
        found = [json.loads(line) for line in out.splitlines()]
        mine = [e for e in found if (e.get("objectRef") or {}).get("namespace") == namespace
                and (e.get("objectRef") or {}).get("name") == name]
        if len(mine) < 3:  # wait_for keeps this as the last value seen, should it time out
            raise AssertionError(f"{len(found)} events in the log, {len(mine)} of ours; latest: {found[-2:]}")
        return mine

    seen = wait_for("the writes in the audit log", events, timeout=30)
    got = [(e["verb"], e["objectRef"]["resource"], e["responseStatus"]["code"], e["user"]["username"]) for e in seen]
    assert ("create", "configmaps", 201, "admin") in got
    assert ("delete", "configmaps", 200, "admin") in got
    assert ("create", "pods", 403, "admin") in got
    table = run("audit", "tail", "-n", "50").stdout.splitlines()
    assert table[0].split()[:3] == ["TIME", "USER", "VERB"]
    assert any(name in line and "403" in line and "pods" in line for line in table[1:])


def test_restricted_pod_runs_with_what_it_asked_for(client: Client, namespace: str) -> None:
    run("label", "namespace", namespace, f"{PRIVILEGED_LABEL}=restricted")
    hardened = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: hardened}
        spec:
          terminationGracePeriodSeconds: 0
          securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
          containers:
          - name: main
            image: busybox
            command: [sleep, "3600"]
            securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        """)
    refused = run("apply", "-f", "-", "-n", namespace, input=privileged_pod("loose").replace(
        "securityContext: {privileged: true}", "securityContext: {}"), check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr
    run("apply", "-f", "-", "-n", namespace, input=hardened)

    wait_ready(client, "hardened", namespace)
    status = run("exec", "hardened", "-n", namespace, "--", "sh", "-c", "id -u; cat /proc/self/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines()[1:] if ":" in line)
    assert status.splitlines()[0] == "1000"
    assert fields["CapEff"].strip() == "0000000000000000"  # capabilities.drop: [ALL]
    assert fields["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
    assert fields["Seccomp"].strip() == "2"  # RuntimeDefault: a filter is on

    # runAsNonRoot is checked against the image's user: busybox runs as root, so the kubelet refuses it
    root_image = hardened.replace("name: hardened", "name: rootimage").replace(", runAsUser: 1000", "")
    run("apply", "-f", "-", "-n", namespace, input=root_image)
    state = wait_for("rootimage refused", lambda: waiting(client, "rootimage", namespace, "main"), timeout=90)
    assert state.reason == "CreateContainerError" and "runAsNonRoot and image will run as root" in state.message
