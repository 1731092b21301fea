"""Node identities on the real cluster: the kubelet's port 10250 speaks TLS and answers only the API server's
client identity; `minik8s logs`/`exec` still work through it; a node's own credential, read from its
state dir as a user would, may change its own Node but not another one, nor a pod bound elsewhere."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from minik8s import Client
from minik8s.api import printers
from minik8s.cluster.bootstrap import NodeCredentials
from minik8s.cluster.config import ClusterConfig
from minik8s.errors import Forbidden
from tests.e2e.conftest import run, sleeper_pod, unique

KUBELET_PORT = 10250


def node_ip(client: Client, name: str) -> str:
    return str(printers.node_ip(client.get("Node", name, None).to_dict()))


def creds(name: str) -> NodeCredentials:
    return NodeCredentials.of(ClusterConfig().nodes_dir / name)


@pytest.fixture(scope="module")
def pod(client: Client, module_ns: str) -> Iterator[str]:
    """A pod on node-2 in the module's namespace (the tests that use it take `module_ns` too)."""
    with sleeper_pod(client, "nid", node="node-2", namespace=module_ns) as name:
        yield name


def test_the_kubelet_refuses_anyone_but_the_api_server(client: Client, pod: str, module_ns: str) -> None:
    admin_token = json.loads(_config_path().read_text())["token"]
    ca = creds("node-2").ca.read_text()
    base = f"https://{node_ip(client, 'node-2')}:{KUBELET_PORT}"
    logs = f"{base}/containerLogs/{module_ns}/{pod}/main"
    anonymous = httpx.Client(verify=ssl.create_default_context(cadata=ca), timeout=10)
    assert anonymous.get(f"{base}/healthz").status_code == 200  # served with a certificate from the cluster CA
    assert anonymous.get(logs).status_code == 401
    assert anonymous.get(logs, headers={"Authorization": f"Bearer {admin_token}"}).status_code == 401
    exec_url = f"{base}/exec/{module_ns}/{pod}/main"
    assert anonymous.post(exec_url, json={"command": ["id"]}).status_code == 401
    # another node's certificate chains to the CA but is not the API server's identity
    other = creds("node-1")
    as_node = httpx.Client(verify=_context(ca, other), timeout=10)
    refused = as_node.get(logs)
    assert refused.status_code == 403 and "system:node:node-1" in refused.json()["message"]
    # plain HTTP gets nothing served
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{node_ip(client, 'node-2')}:{KUBELET_PORT}/containerLogs/{module_ns}/{pod}/main",
                  timeout=10)


def test_logs_and_exec_still_work(pod: str, module_ns: str) -> None:
    assert run("exec", "-n", module_ns, pod, "--", "sh", "-c", "echo via-kubelet-tls").stdout == "via-kubelet-tls\n"
    run("exec", "-n", module_ns, pod, "--", "sh", "-c", "echo to-the-log > /proc/1/fd/1")
    assert "to-the-log" in run("logs", "-n", module_ns, pod).stdout


def test_a_node_credential_cannot_modify_another_node(client: Client, kubeconfig: Path, pod: str, module_ns: str,
                                                      tmp_path: Path) -> None:
    mine = creds("node-1")
    server = json.loads(_config_path().read_text())["server"]
    kubectl = ["kubectl", "--server", server, "--certificate-authority", str(mine.ca),
               "--client-certificate", str(mine.client_cert), "--client-key", str(mine.client_key)]
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}  # only the node's credential, nothing else
    label = unique("x")
    own = subprocess.run([*kubectl, "label", "node", "node-1", f"nid-test={label}"], capture_output=True, text=True,
                         env=env)
    assert own.returncode == 0, own.stderr
    other = subprocess.run([*kubectl, "label", "node", "node-2", f"nid-test={label}"], capture_output=True, text=True,
                           env=env)
    assert other.returncode != 0 and "Forbidden" in other.stderr and "system:node:node-1" in other.stderr
    assert (client.get("Node", "node-2", None).metadata.labels or {}).get("nid-test") != label
    deleting = subprocess.run([*kubectl, "delete", "node", "node-3", "--wait=false"], capture_output=True, text=True,
                              env=env)
    assert deleting.returncode != 0 and "Forbidden" in deleting.stderr
    run("label", "node", "node-1", "nid-test-")

    node1 = Client(server, None, ca=mine.ca.read_text(), cert=str(mine.client_cert), key=str(mine.client_key))
    try:
        bound_elsewhere = client.get("Pod", pod, module_ns).to_dict()  # on node-2
        with pytest.raises(Forbidden):
            node1.request("PUT", f"/api/v1/namespaces/{module_ns}/pods/{pod}/status",
                          json={**bound_elsewhere, "status": {"phase": "Failed"}})
        with pytest.raises(Forbidden):
            node1.delete("Pod", pod, module_ns)
        with pytest.raises(Forbidden):
            node1.list("Secret", namespace="kube-system")
    finally:
        node1.close()
    assert client.get("Pod", pod, module_ns).status.phase == "Running"


def test_node_state_holds_no_admin_token() -> None:
    admin_token = json.loads(_config_path().read_text())["token"]
    for name in ("node-1", "node-2", "node-3"):
        pki = creds(name).dir
        assert pki.stat().st_mode & 0o777 == 0o700
        for f in pki.iterdir():
            assert admin_token not in f.read_text()
            if f.suffix == ".key":
                assert f.stat().st_mode & 0o777 == 0o600


def _config_path() -> Path:
    from minik8s.client.sdk import config_path

    return config_path()


def _context(ca: str, node: NodeCredentials) -> Any:
    ctx = ssl.create_default_context(cadata=ca)
    ctx.load_cert_chain(str(node.client_cert), str(node.client_key))
    return ctx
