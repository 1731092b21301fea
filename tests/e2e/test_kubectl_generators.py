"""kubectl's generators on a real cluster: `kubectl create namespace|configmap|secret|deployment|job|
cronjob|service|serviceaccount|ingress`, `kubectl run` and `kubectl expose`, as a user types them.

kubectl 1.32 sends most of these as protobuf (application/vnd.kubernetes.protobuf, never retried as
JSON), so each one here proves the API server reads what kubectl wrote; the objects must then do what
they do in Kubernetes: the deployment's pod runs, the exposed service gets its endpoints, the job
completes, the pod that `kubectl run` made prints the env it was given.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import unique, wait_for

JOB_TIMEOUT_S = 180.0


def kubectl(kc: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def get(kc: Path, ns: str, *what: str) -> Any:
    return json.loads(kubectl(kc, "-n", ns, "get", *what, "-o", "json").stdout)


def test_generators_create_working_objects(kubeconfig: Path) -> None:
    ns = unique("gen")
    assert kubectl(kubeconfig, "create", "namespace", ns).stdout.strip() == f"namespace/{ns} created"
    try:
        _config_objects(kubeconfig, ns)
        _deployment_and_expose(kubeconfig, ns)
        _run_and_job(kubeconfig, ns)
    finally:
        for kind in ("deployment", "service", "job", "cronjob", "pod", "ingress"):
            kubectl(kubeconfig, "-n", ns, "delete", kind, "--all", "--grace-period=0", check=False)
        kubectl(kubeconfig, "delete", "namespace", ns, check=False)


def _config_objects(kc: Path, ns: str) -> None:
    kubectl(kc, "-n", ns, "create", "configmap", "settings", "--from-literal=mode=fast", "--from-literal=level=3")
    assert get(kc, ns, "configmap", "settings")["data"] == {"mode": "fast", "level": "3"}
    kubectl(kc, "-n", ns, "create", "secret", "generic", "creds", "--from-literal=user=admin")
    secret = get(kc, ns, "secret", "creds")
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["user"]) == b"admin"
    kubectl(kc, "-n", ns, "create", "serviceaccount", "robot")
    assert get(kc, ns, "serviceaccount", "robot")["metadata"]["name"] == "robot"
    kubectl(kc, "-n", ns, "create", "service", "clusterip", "front", "--tcp=80:8080")
    port = get(kc, ns, "service", "front")["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (80, 8080)
    kubectl(kc, "-n", ns, "create", "ingress", "site", "--rule=foo.example/=front:80")
    rule = get(kc, ns, "ingress", "site")["spec"]["rules"][0]
    assert rule["host"] == "foo.example"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "front", "port": {"number": 80}}
    kubectl(kc, "-n", ns, "create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date")
    assert get(kc, ns, "cronjob", "tick")["spec"]["schedule"] == "*/5 * * * *"


def _deployment_and_expose(kc: Path, ns: str) -> None:
    kubectl(kc, "-n", ns, "create", "deployment", "web", "--image=busybox", "--replicas=2", "--port=8080", "--",
            "httpd", "-f", "-p", "8080", "-h", "/")
    deployment = get(kc, ns, "deployment", "web")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["httpd", "-f", "-p", "8080", "-h", "/"]

    def available() -> bool:
        return get(kc, ns, "deployment", "web").get("status", {}).get("availableReplicas") == 2

    wait_for("deployment web's two pods available", available, timeout=JOB_TIMEOUT_S)
    assert kubectl(kc, "-n", ns, "expose", "deployment", "web", "--port=80", "--target-port=8080").stdout.strip() \
        == "service/web exposed"

    def endpoint_ips() -> list[str]:
        subsets = get(kc, ns, "endpoints", "web").get("subsets") or []
        return [a["ip"] for s in subsets for a in s.get("addresses") or []]

    pods = get(kc, ns, "pods", "-l", "app=web")["items"]
    assert sorted(wait_for("endpoints of service web", endpoint_ips)) == sorted(p["status"]["podIP"] for p in pods)


def _run_and_job(kc: Path, ns: str) -> None:
    kubectl(kc, "-n", ns, "run", "greeter", "--image=busybox", "--restart=Never", "--env=GREETING=hello-from-run",
            "--", "sh", "-c", "echo $GREETING")

    def succeeded() -> bool:
        return get(kc, ns, "pod", "greeter").get("status", {}).get("phase") == "Succeeded"

    wait_for("pod greeter Succeeded", succeeded, timeout=JOB_TIMEOUT_S)
    assert kubectl(kc, "-n", ns, "logs", "greeter").stdout.strip() == "hello-from-run"
    kubectl(kc, "-n", ns, "create", "job", "once", "--image=busybox", "--", "sh", "-c", "echo done")

    def complete() -> bool:
        return get(kc, ns, "job", "once").get("status", {}).get("succeeded") == 1

    wait_for("job once complete", complete, timeout=JOB_TIMEOUT_S)
    kubectl(kc, "-n", ns, "create", "job", "manual", "--from=cronjob/tick")
    job = get(kc, ns, "job", "manual")
    assert [o["name"] for o in job["metadata"]["ownerReferences"]] == ["tick"]
