"""Shared fixtures: a real etcd (temp dir, free ports) and a real API server in-process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

# `make install` puts some tools (kubectl) into the venv: its bin directory is on PATH as if activated,
# after the system's, so a machine's own kubectl still wins
VENV_BIN = str(Path(sys.executable).parent)
if VENV_BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + VENV_BIN

ETCD_START_TIMEOUT_S = 20.0
TEST_TOKEN = "test-token-0123456789"


def requires(*programs: str, root: bool = True) -> pytest.MarkDecorator:
    """Mark tests that need root and these programs. Without them the tests fail, never skip:
    `make install` installs every one, so a missing one is a broken machine, not an optional feature."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # a non-login root shell
    missing = [p for p in programs if shutil.which(p, path=search) is None]
    if root and os.geteuid() != 0:
        missing.insert(0, "root")
    return pytest.mark.requires(missing)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        if mark.args[0]:
            pytest.fail(f"needs {', '.join(mark.args[0])}: run `make install`, as root", pytrace=False)


def free_port() -> int:
    """An ephemeral loopback port (so always outside Ray's worker-port range, 10002-19999)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll `cond` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def start_etcd(data: Path, name: str, client_port: int, peer_port: int,
               initial_cluster: str | None = None) -> subprocess.Popen[bytes]:
    """One etcd member on 127.0.0.1 with its data and log under `data`; the caller stops it by PID.
    `initial_cluster` (name=peerURL,...) makes it a member of a new multi-member cluster."""
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed: run `make install` (Debian package etcd-server)")
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    log = data / f"{name}.log"
    return subprocess.Popen(
        ["etcd", "--name", name, "--data-dir", str(data / name), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", initial_cluster or f"{name}={peer}", "--initial-cluster-state", "new"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"))


def wait_etcd_healthy(url: str, procs: list[subprocess.Popen[bytes]], data: Path) -> None:
    """Until `url` reports healthy (a member with a leader); kills `procs` if it does not in time."""
    deadline = time.monotonic() + ETCD_START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            logs = "".join(f.read_text()[-1000:] for f in sorted(data.glob("*.log")))
            raise RuntimeError(f"etcd did not start: {logs}")
        time.sleep(0.1)


@contextmanager
def single_etcd() -> Iterator[str]:
    """A one-member etcd on free loopback ports, data in a temp dir; its client URL."""
    data = Path(tempfile.mkdtemp(prefix="minik8s-etcd-"))
    client_port = free_port()
    url = f"http://127.0.0.1:{client_port}"
    proc = start_etcd(data, "default", client_port, free_port())
    try:
        wait_etcd_healthy(url, [proc], data)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def write_kubeconfig(path: Path, server: str, namespace: str | None = None) -> Path:
    """A kubeconfig for kubectl against a plain-HTTP test API server with no authentication."""
    context: dict[str, str] = {"cluster": "t", "user": "t", **({"namespace": namespace} if namespace else {})}
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": context}]}))
    return path


@contextmanager
def open_apiserver(etcd_endpoint: str, name: str) -> Iterator[str]:
    """An API server with authentication off, as kubectl reaches it over plain HTTP; its URL."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    if not shutil.which("kubectl"):
        pytest.fail("kubectl is missing: `make install` puts one in .venv/bin")
    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=None, port=port, pod_cidr="10.0.0.0/8"))
    server = ServerThread(api.app, ["127.0.0.1"], port, name=name)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def etcd_endpoint() -> Iterator[str]:
    with single_etcd() as url:
        yield url


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A cluster CA with the API server's certificates (serving, and its client identity toward kubelets)."""
    from minik8s.pki import ensure_pki

    return ensure_pki(tmp_path_factory.mktemp("pki"), ["127.0.0.1"], ["localhost"])


def kubelet_tls(pki: Any, directory: Path, node: str, ip: str = "127.0.0.1") -> dict[str, str]:
    """KubeletConfig fields for a kubelet serving TLS with a certificate from `pki`'s CA, as a joined node's."""
    from minik8s.pki import SERVER_AUTH, issue

    key, cert = directory / f"{node}-kubelet.key", directory / f"{node}-kubelet.crt"
    issue(pki, key, cert, f"system:node:{node}", ["system:nodes"], SERVER_AUTH, [f"IP:{ip}", f"DNS:{node}"])
    return {"tls_cert": str(cert), "tls_key": str(key), "client_ca": str(pki.ca_cert)}


def apiserver_pki_config(pki: Any) -> dict[str, str]:
    """ApiServerConfig fields: the CA (client certificates, joins) and the client identity toward kubelets."""
    return {"ca_cert": str(pki.ca_cert), "ca_key": str(pki.ca_key),
            "kubelet_client_cert": str(pki.kubelet_client_cert), "kubelet_client_key": str(pki.kubelet_client_key)}


@pytest.fixture(scope="session")
def apiserver(etcd_endpoint: str, test_pki: Any) -> Iterator[str]:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    # a wide pod network so each test module can give its nodes their own /24s
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port, pod_cidr="10.0.0.0/8",
                                    **apiserver_pki_config(test_pki)))
    server = ServerThread(api.app, ["127.0.0.1"], port, name="test-apiserver")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def client(apiserver: str):  # type: ignore[no-untyped-def]
    from minik8s import Client

    c = Client(apiserver, TEST_TOKEN)
    yield c
    c.close()


def seed_service_account_objects(client: Any, namespace: str = "default", ca: str = "test CA\n") -> None:
    """What the controller manager keeps in every namespace, for tests that run a kubelet without one: the
    `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap a pod's token volume projects."""
    from minik8s.errors import AlreadyExists

    for obj in ({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt",
                                                                       "namespace": namespace},
                 "data": {"ca.crt": ca}}):
        try:
            client.create(obj)
        except AlreadyExists:
            pass
