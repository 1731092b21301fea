"""pods/portforward through a real API server and a real kubelet port-forward endpoint, driven by real
kubectl (SPDY over WebSocket) and the official Python client (v4 channels).

The "pod" is this test process: the kubelet endpoint's sandbox lookup answers our own pid, so it dials
127.0.0.1 in our own network namespace, where a small HTTP server runs. (tests/e2e/test_portforward.py
does the same against real pods.)
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.conftest import TEST_TOKEN, apiserver_pki_config, free_port, kubelet_tls, uniq, wait_for

BIG = bytes(range(256)) * 4096  # 1 MiB, every byte value
PAGE = b"hello from the pod\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = BIG if self.path == "/big" else PAGE
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _OurselvesAsSandbox:
    def sandbox_pid(self, namespace: str, pod: str) -> int:
        return os.getpid()


@pytest.fixture(scope="module")
def pod_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def kubelet_port(test_pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from minik8s.kubelet import portforward
    from minik8s.kubelet.server import ClientCheck, KubeletServer

    app = FastAPI()
    portforward.register(app, _OurselvesAsSandbox(), ClientCheck())
    port = free_port()
    server = KubeletServer(app, "127.0.0.1", port, **kubelet_tls(test_pki, tmp_path_factory.mktemp("kubelet"), "pf"))
    server.start()
    yield port
    server.stop()


@pytest.fixture(scope="module")
def tls(test_pki: Any) -> Path:
    """kubectl never sends a token over plain HTTP: this API server speaks TLS, with the cluster CA."""
    return Path(test_pki.dir)


@pytest.fixture(scope="module")
def apiserver(etcd_endpoint: str, tls: Path, test_pki: Any) -> Iterator[str]:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                                    pod_cidr="10.0.0.0/8", **apiserver_pki_config(test_pki)))
    server = ServerThread(api.app, ["127.0.0.1"], port, name="test-apiserver-tls",
                          tls_cert=str(tls / "apiserver.crt"), tls_key=str(tls / "apiserver.key"))
    server.start()
    yield f"https://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def pod(apiserver: str, kubelet_port: int, tls: Path) -> str:
    from minik8s import Client

    client = Client(apiserver, TEST_TOKEN, ca=(tls / "ca.crt").read_text())
    node, name = uniq("pf-node"), uniq("pf-pod")
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    client.patch("Node", node, {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                           "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}},
                 namespace=None, subresource="status")
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"nodeName": node, "containers": [{"name": "web", "image": "busybox"}]}}, "default")
    client.patch("Pod", name, {"status": {"phase": "Running"}}, subresource="status")
    client.close()
    return name


@pytest.fixture(scope="module")
def kubeconfig(apiserver: str, tls: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: t, cluster: {{server: "{apiserver}", certificate-authority: "{tls / 'ca.crt'}"}}}}]
users: [{{name: t, user: {{token: "{TEST_TOKEN}"}}}}]
contexts: [{{name: t, context: {{cluster: t, user: t, namespace: default}}}}]
current-context: t
""")
    return path


def _fetch(port: int, path: str = "/") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as resp:
        return bytes(resp.read())


def _kubectl_port_forward(kubeconfig: Path, *args: str, websockets: bool = True) -> subprocess.Popen[str]:
    """kubectl port-forward; ``websockets=False``: the plain HTTP ``Upgrade: SPDY/3.1`` of kubectl < 1.31."""
    if not shutil.which("kubectl"):
        pytest.fail("kubectl is missing: `make install` puts one in .venv/bin")
    env = {**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true" if websockets else "false"}
    return subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "port-forward", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_listening(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Forwarding from 127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"kubectl port-forward did not start: {line}{proc.communicate()[1]}")
    return line


@pytest.mark.parametrize("websockets", [True, False], ids=["spdy-over-websocket", "spdy-upgrade"])
def test_kubectl_port_forward(kubeconfig: Path, pod: str, pod_server: int, websockets: bool) -> None:
    local = free_port()
    proc = _kubectl_port_forward(kubeconfig, f"pod/{pod}", f"{local}:{pod_server}", "-v=4", websockets=websockets)
    try:
        _wait_listening(proc)
        for _ in range(3):
            assert _fetch(local) == PAGE
        assert _fetch(local, "/big") == BIG
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(_fetch(local, "/big"))) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results == [BIG, BIG]
    finally:
        proc.terminate()
        _, log = proc.communicate(timeout=10)
    assert ("negotiated protocol: portforward.k8s.io" in log) == websockets  # the tunnel, not a fallback to it
    assert "fallback to secondary dialer" not in log


@pytest.mark.parametrize("websockets", [True, False], ids=["spdy-over-websocket", "spdy-upgrade"])
def test_kubectl_port_forward_to_closed_port_fails(kubeconfig: Path, pod: str, websockets: bool) -> None:
    local, closed = free_port(), free_port()
    proc = _kubectl_port_forward(kubeconfig, pod, f"{local}:{closed}", websockets=websockets)
    try:
        _wait_listening(proc)
        with socket.create_connection(("127.0.0.1", local), timeout=20) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(100) == b""  # closed, no hang
        proc.wait(20)
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert f"error forwarding port {closed} to pod {pod}" in err and "connection refused" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _python_client_config(apiserver: str, tls: Path) -> Any:
    from kubernetes import client as k8s

    config = k8s.Configuration(host=apiserver, api_key={"authorization": f"Bearer {TEST_TOKEN}"})
    config.ssl_ca_cert = str(tls / "ca.crt")
    return config


def test_python_client_portforward(apiserver: str, tls: Path, pod: str, pod_server: int) -> None:
    from kubernetes import client as k8s
    from kubernetes.stream import portforward

    config = _python_client_config(apiserver, tls)
    api = k8s.CoreV1Api(k8s.ApiClient(config))
    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports=str(pod_server))
    sock = forward.socket(pod_server)
    sock.settimeout(20)
    sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
    received = b""
    while chunk := sock.recv(1 << 20):
        received += chunk
    assert received.endswith(b"\r\n\r\n" + BIG)
    assert forward.error(pod_server) is None
    sock.close()


def test_python_client_portforward_closed_port(apiserver: str, tls: Path, pod: str) -> None:
    from kubernetes import client as k8s
    from kubernetes.stream import portforward

    closed = free_port()
    config = _python_client_config(apiserver, tls)
    api = k8s.CoreV1Api(k8s.ApiClient(config))
    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports=str(closed))
    sock = forward.socket(closed)
    sock.settimeout(20)
    assert sock.recv(10) == b""
    error = wait_for(lambda: forward.error(closed), 10)
    assert f"error forwarding port {closed}" in error


def test_portforward_needs_a_token(apiserver: str, tls: Path, pod: str) -> None:
    from websocket import WebSocketBadStatusException, create_connection

    url = apiserver.replace("https://", "wss://") + f"/api/v1/namespaces/default/pods/{pod}/portforward?ports=80"
    with pytest.raises(WebSocketBadStatusException) as info:
        create_connection(url, subprotocols=["v4.channel.k8s.io"], sslopt={"ca_certs": str(tls / "ca.crt")})
    assert info.value.status_code == 401


def test_minik8s_port_forward(apiserver: str, tls: Path, pod: str, pod_server: int, tmp_path: Path) -> None:
    import json
    import sys

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": apiserver, "token": TEST_TOKEN, "ca": (tls / "ca.crt").read_text()}))
    local, closed = free_port(), free_port()
    cli = [sys.executable, "-m", "cli.main", "port-forward", pod, f"{local}:{pod_server}", f":{closed}"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MINIK8S_CONFIG": str(config)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"Forwarding from 127.0.0.1:{local} -> {pod_server}\n"
        second = proc.stdout.readline()
        assert second.startswith("Forwarding from 127.0.0.1:") and second.endswith(f" -> {closed}\n")
        assert _fetch(local) == PAGE
        assert _fetch(local, "/big") == BIG
        with socket.create_connection(("127.0.0.1", int(second.split(":")[1].split()[0])), timeout=20) as conn:
            assert conn.recv(10) == b""  # nothing listens there in the pod: closed, not hung
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"error forwarding port {closed} to pod {pod}" in err and "connection refused" in err


def test_plain_http_request_is_told_to_upgrade(apiserver: str, tls: Path, pod: str) -> None:
    import ssl

    import httpx

    verify = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    resp = httpx.post(f"{apiserver}/api/v1/namespaces/default/pods/{pod}/portforward",
                      headers={"Authorization": f"Bearer {TEST_TOKEN}"}, verify=verify)
    assert resp.status_code == 400 and "Upgrade request required" in resp.json()["message"]
    listing = httpx.get(f"{apiserver}/api/v1", headers={"Authorization": f"Bearer {TEST_TOKEN}"},
                        verify=verify).json()
    assert {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
            "verbs": ["create", "get"]} in listing["resources"]


def test_python_client_two_ports_one_refused(apiserver: str, tls: Path, pod: str, pod_server: int) -> None:
    from kubernetes import client as k8s
    from kubernetes.stream import portforward

    closed = free_port()
    api = k8s.CoreV1Api(k8s.ApiClient(_python_client_config(apiserver, tls)))
    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports=f"{pod_server},{closed}")
    assert wait_for(lambda: forward.error(closed), 10).startswith(f"error forwarding port {closed}")
    sock = forward.socket(pod_server)
    sock.settimeout(20)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    assert received.endswith(b"\r\n\r\n" + PAGE)
    sock.close()


def test_minik8s_port_forward_to_a_missing_pod_fails(apiserver: str, tls: Path, tmp_path: Path) -> None:
    import json
    import sys

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": apiserver, "token": TEST_TOKEN, "ca": (tls / "ca.crt").read_text()}))
    proc = subprocess.run([sys.executable, "-m", "cli.main", "port-forward", "no-such-pod", "8080"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MINIK8S_CONFIG": str(config)})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == 'error: pods "no-such-pod" not found'


def _kubelet_target(kubelet_port: int, pki: Any, as_apiserver: bool = True) -> Any:
    """The kubelet hop as the API server dials it: TLS to the cluster CA, with (or without) its client certificate."""
    from minik8s.apiserver.portforward import PodTarget
    from minik8s.auth import x509

    cert, key = (str(pki.kubelet_client_cert), str(pki.kubelet_client_key)) if as_apiserver else (None, None)
    ctx = x509.client_context(Path(pki.ca_cert).read_text(), cert, key)
    return PodTarget("default", "any-pod", "uid-1", f"wss://127.0.0.1:{kubelet_port}", ctx)


def test_kubelet_hop_streams_both_ways_and_keeps_reading_after_half_close(kubelet_port: int, pod_server: int,
                                                                           test_pki: Any) -> None:
    import asyncio

    from minik8s.apiserver.portforward import Upstream

    async def scenario() -> bytes:
        upstream = await Upstream.open(_kubelet_target(kubelet_port, test_pki), pod_server)
        await upstream.send_parts([b"GET /big HTTP/1.0\r\n", memoryview(b"\r\n")])
        await upstream.close_write()  # the pod answers after our half-close, as HTTP/1.0 servers do
        received = b""
        while (chunk := await upstream.recv()) is not None:
            assert isinstance(chunk, bytes), chunk
            received += chunk
        await upstream.close()
        return received

    response = asyncio.run(scenario())
    assert response.startswith(b"HTTP/1.0 200") and response.endswith(BIG)


@pytest.mark.parametrize(("as_apiserver", "port", "reason"), [
    (False, None, "Unauthorized: the kubelet API needs the API server's client certificate"),
    (True, 1, "dial tcp4 127.0.0.1:1: connect: connection refused"),
], ids=["no-client-certificate", "closed-port"])
def test_kubelet_hop_refusals_carry_the_reason(kubelet_port: int, pod_server: int, test_pki: Any, as_apiserver: bool,
                                               port: int | None, reason: str) -> None:
    import asyncio

    from minik8s.apiserver.portforward import Upstream
    from minik8s.errors import Unavailable

    with pytest.raises(Unavailable) as refused:
        asyncio.run(Upstream.open(_kubelet_target(kubelet_port, test_pki, as_apiserver), port or pod_server))
    assert refused.value.message == reason


def test_kubelet_drops_the_pod_connection_when_the_api_server_leaves_after_half_close(kubelet_port: int,
                                                                                     test_pki: Any) -> None:
    """A pod that keeps talking after our half-close must not stream to nobody once the API server is gone."""
    import asyncio

    from minik8s.apiserver.portforward import Upstream

    listener = socket.create_server(("127.0.0.1", 0))
    dropped = threading.Event()

    def chatty_pod() -> None:
        conn, _ = listener.accept()
        while conn.recv(65536):
            pass  # until our half-close arrives
        try:
            while True:
                conn.sendall(b"x" * 1024)
                time.sleep(0.02)
        except OSError:
            dropped.set()
        conn.close()

    threading.Thread(target=chatty_pod, daemon=True).start()

    async def scenario() -> None:
        upstream = await Upstream.open(_kubelet_target(kubelet_port, test_pki), listener.getsockname()[1])
        await upstream.send(b"hi")
        await upstream.close_write()
        assert isinstance(await upstream.recv(), bytes)  # the pod talks on after the half-close
        await upstream.close()

    asyncio.run(scenario())
    assert dropped.wait(10), "the kubelet kept the pod's connection after the API server left"
    listener.close()
