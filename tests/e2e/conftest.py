"""A real local cluster for end-to-end tests, driven through the CLI and the SDK as a user would.

The session starts it with `minik8s up` (adopting one that already runs) and stops it with
`minik8s down` at the end unless MINIK8S_E2E_KEEP=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from minik8s import Client

REPO = Path(__file__).resolve().parents[2]
MINIK8S = str(Path(sys.executable).parent / "minik8s")
UP_TIMEOUT_S = 900
CMD_TIMEOUT_S = 120
T = TypeVar("T")
# Short node-health timings so the node-failure test runs in well under a minute.
NODE_GRACE_S = 20
EVICTION_S = 10
UP_ARGS = ("up", "--nodes", "3", "--node-monitor-grace-period", str(NODE_GRACE_S),
           "--pod-eviction-timeout", str(EVICTION_S))


def run(*args: str, input: str | None = None, check: bool = True, timeout: float = CMD_TIMEOUT_S
        ) -> subprocess.CompletedProcess[str]:
    """`minik8s ARGS…` as a user types it; output captured as text."""
    proc = subprocess.run([MINIK8S, *args], input=input, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"minik8s {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.5) -> T:
    """Poll until `probe` returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # the probe may race with the system it observes
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


HOSTNAME_HTTPD = "mkdir -p /www && hostname > /www/index.html && httpd -f -p 8080 -h /www"


def web_app(name: str, replicas: int = 1, command: str = HOSTNAME_HTTPD, service_type: str = "ClusterIP") -> str:
    """A Deployment of busybox HTTP servers on port 8080 (named `http`) and a Service on port 80 for it."""
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: web
                image: busybox
                command: [sh, -c, '{command}']
                ports: [{{name: http, containerPort: 8080}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}}}
        spec:
          type: {service_type}
          selector: {{app: {name}}}
          ports: [{{name: http, port: 80, targetPort: http}}]
        """)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def pod_on(name: str, node: str | None, image: str, command: list[str]) -> str:
    """A one-container Pod manifest, on `node` (None: wherever the scheduler puts it)."""
    selector = f"\n          nodeSelector: {{kubernetes.io/hostname: {node}}}" if node else ""
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:{selector}
          terminationGracePeriodSeconds: 0
          containers:
          - name: main
            image: "{image}"
            command: {json.dumps(command)}
        """)


@contextmanager
def sleeper_pod(client: Client, prefix: str, image: str = "busybox", node: str | None = None,
                namespace: str = "default") -> Iterator[str]:
    """A running pod that only sleeps, to `exec` requests from inside the cluster; deleted afterwards."""
    name = unique(prefix)
    run("apply", "-n", namespace, "-f", "-", input=pod_on(name, node, image, ["sleep", "3600"]))
    try:
        wait_running(client, name, namespace=namespace)
        yield name
    except BaseException:
        run("delete", "pod", name, "-n", namespace, "--grace-period", "0", check=False)
        raise
    run("delete", "pod", name, "-n", namespace, "--grace-period", "0")


@pytest.fixture(scope="session")
def kubeconfig(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig for kubectl, as `minik8s kubeconfig` prints it for users."""
    path = tmp_path_factory.mktemp("kube") / "kc"
    path.write_text(run("kubeconfig").stdout)
    return path


def leave_ray() -> None:
    """Tests that talk to actors connect a Ray driver in this process: it must leave before the head goes
    (`down`, a kill), or the next test that asks for an actor talks to a head that is no more."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def cluster() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("e2e tests need root (network namespaces, dockerd)")
    run(*UP_ARGS, timeout=UP_TIMEOUT_S)
    yield
    leave_ray()
    if os.environ.get("MINIK8S_E2E_KEEP") != "1":
        run("down", timeout=UP_TIMEOUT_S)


@pytest.fixture(scope="session")
def client(cluster: None) -> Iterator[Client]:
    c = Client.from_config()
    yield c
    c.close()


def pod_phase(client: Client, name: str, namespace: str = "default") -> str | None:
    pod = client.get("Pod", name, namespace)
    return pod.status.phase if pod.status else None


def wait_running(client: Client, name: str, timeout: float = 90.0, namespace: str = "default") -> Any:
    def ready() -> Any:
        pod = client.get("Pod", name, namespace)
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        ok = pod.status and pod.status.phase == "Running" and statuses and all(s.ready for s in statuses)
        return pod if ok else None

    return wait_for(f"pod {name} running and ready", ready, timeout)


@contextmanager
def fresh_namespace() -> Iterator[str]:
    """A new namespace, deleted (with all in it) afterwards, whatever the test left there."""
    name = unique("e2e")
    run("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
    try:
        yield name
    finally:
        run("delete", "namespace", name, check=False)


@pytest.fixture
def ns(cluster: None) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards: a module's objects never meet another's."""
    with fresh_namespace() as name:
        yield name


@pytest.fixture(scope="module")
def module_ns(cluster: None) -> Iterator[str]:
    """A namespace the tests of one module share (with an expensive fixture in it), deleted after the module."""
    with fresh_namespace() as name:
        yield name


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    """`kubectl --kubeconfig KC ARGS…` with output captured as text (the venv's kubectl, as make install puts it)."""
    exe = str(Path(sys.executable).parent / "kubectl")
    proc = subprocess.run([exe, "--kubeconfig", str(kubeconfig), *args], input=input, capture_output=True,
                          text=True, timeout=CMD_TIMEOUT_S, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
