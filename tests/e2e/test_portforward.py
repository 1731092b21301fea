"""Port-forward to a real pod: kubectl 1.32 (SPDY over WebSocket), the official Python client (v4 channels)
and `minik8s port-forward`, through the API server and the pod node's kubelet."""

from __future__ import annotations

import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from tests.conftest import free_port
from tests.e2e.conftest import MINIK8S, REPO, run, unique, wait_running

# busybox httpd on 8080 (all addresses) and on 127.0.0.1:9090 (the pod's loopback only)
BIG_LINES = 150000
SERVE = (f"mkdir -p /www && echo hello-from-pod > /www/index.html && seq 1 {BIG_LINES} > /www/big && "
         "httpd -p 127.0.0.1:9090 -h /www && httpd -f -p 8080 -h /www")
BIG = "".join(f"{i}\n" for i in range(1, BIG_LINES + 1)).encode()  # what `seq` writes: ~1 MB


@pytest.fixture(scope="module")
def web(client: Client, module_ns: str) -> Iterator[str]:
    """A web pod and its Service in the module's namespace (the tests that use it take `module_ns` too)."""
    name = unique("pf-web")
    run("apply", "-n", module_ns, "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, '{SERVE}']
    ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
""")
    try:
        wait_running(client, name, namespace=module_ns)
        yield name
    finally:
        run("delete", "pod", "-n", module_ns, name, "--grace-period", "0", check=False)
        run("delete", "service", "-n", module_ns, name, check=False)


def _fetch(port: int, path: str = "/") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
        return bytes(resp.read())


def _started(proc: subprocess.Popen[str], expect: str) -> None:
    """Wait for the forwarder's first line; fail with its stderr if it exits instead."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(expect):
        proc.kill()
        raise AssertionError(f"port-forward did not start: {line}{proc.communicate()[1]}")


def _kubectl(kubeconfig: Path, ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "port-forward", "-n", ns, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kubectl_port_forward_sequential_concurrent_and_large(kubeconfig: Path, web: str, module_ns: str) -> None:
    local = free_port()
    proc = _kubectl(kubeconfig, module_ns, f"pod/{web}", f"{local}:8080")
    try:
        _started(proc, f"Forwarding from 127.0.0.1:{local} -> 8080")
        for _ in range(3):
            assert _fetch(local) == b"hello-from-pod\n"
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(_fetch(local, "/big"))) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results == [BIG, BIG]
    finally:
        proc.terminate()
        proc.wait(10)


def test_kubectl_reaches_a_server_on_the_pods_loopback(kubeconfig: Path, web: str, module_ns: str) -> None:
    local = free_port()
    proc = _kubectl(kubeconfig, module_ns, web, f"{local}:9090")
    try:
        _started(proc, f"Forwarding from 127.0.0.1:{local} -> 9090")
        assert _fetch(local) == b"hello-from-pod\n"  # bound to 127.0.0.1 inside the pod: dialled from its netns
    finally:
        proc.terminate()
        proc.wait(10)


def test_kubectl_port_forward_to_a_service(kubeconfig: Path, web: str, module_ns: str) -> None:
    local = free_port()
    # kubectl picks the pod and maps 80 -> http (8080)
    proc = _kubectl(kubeconfig, module_ns, f"svc/{web}", f"{local}:80")
    try:
        _started(proc, f"Forwarding from 127.0.0.1:{local} -> 8080")
        assert _fetch(local) == b"hello-from-pod\n"
    finally:
        proc.terminate()
        proc.wait(10)


def test_kubectl_port_with_nothing_listening_is_an_error(kubeconfig: Path, web: str, module_ns: str) -> None:
    local = free_port()
    proc = _kubectl(kubeconfig, module_ns, web, f"{local}:7777")
    try:
        _started(proc, f"Forwarding from 127.0.0.1:{local} -> 7777")
        with socket.create_connection(("127.0.0.1", local), timeout=30) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(100) == b""
        proc.wait(30)  # kubectl 1.32 gives up on the pod after a forwarding error
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert f"error forwarding port 7777 to pod {web}" in err and "connection refused" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_python_client_portforward(kubeconfig: Path, web: str, module_ns: str) -> None:
    from kubernetes import client as k8s
    from kubernetes import config
    from kubernetes.stream import portforward

    api_client = config.new_client_from_config(str(kubeconfig))
    api = k8s.CoreV1Api(api_client)
    forward = portforward(api.connect_get_namespaced_pod_portforward, web, module_ns, ports="8080")
    sock = forward.socket(8080)
    sock.settimeout(30)
    sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
    received = b""
    while chunk := sock.recv(1 << 20):
        received += chunk
    sock.close()
    assert received.startswith(b"HTTP/1.") and received.endswith(b"\r\n\r\n" + BIG)
    assert forward.error(8080) is None


def test_minik8s_port_forward_pod_and_service(web: str, module_ns: str) -> None:
    pod_port, svc_port, closed_port = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([MINIK8S, "port-forward", "-n", module_ns, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)
             for args in ([web, f"{pod_port}:8080"], [f"svc/{web}", f"{svc_port}:80"],
                          [web, f"{closed_port}:7777"])]
    try:
        _started(procs[0], f"Forwarding from 127.0.0.1:{pod_port} -> 8080")
        _started(procs[1], f"Forwarding from 127.0.0.1:{svc_port} -> 8080")  # service port 80 -> targetPort http
        _started(procs[2], f"Forwarding from 127.0.0.1:{closed_port} -> 7777")
        assert _fetch(pod_port, "/big") == BIG
        assert _fetch(svc_port) == b"hello-from-pod\n"
        with socket.create_connection(("127.0.0.1", closed_port), timeout=30) as conn:
            assert conn.recv(100) == b""
    finally:
        for proc in procs:
            proc.terminate()
        errors = [proc.communicate(timeout=10)[1] for proc in procs]
    assert f"error forwarding port 7777 to pod {web}" in errors[2] and "connection refused" in errors[2]
