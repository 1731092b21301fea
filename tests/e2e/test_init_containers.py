"""Init containers and native sidecars on the real cluster, driven with kubectl as a user would: the order and
the shared volume, kubectl's Init:N/M and Init:Error columns, logs of an init container, a failing init container
holding the app back, and a sidecar that runs beside the app, counts in READY and stops when a Job-like pod ends."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tests.e2e.conftest import kubectl, run, unique, wait_for

INIT_TIMEOUT_S = 120.0


def apply(kubeconfig: Path, ns: str, manifest: str) -> None:
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=textwrap.dedent(manifest))


def pod_json(kubeconfig: Path, ns: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(kubeconfig, "get", "pod", name, "-n", ns, "-o", "json").stdout))


def columns(kubeconfig: Path, ns: str, name: str) -> dict[str, str]:
    """kubectl get pod's NAME/READY/STATUS/RESTARTS columns of one pod."""
    fields = kubectl(kubeconfig, "get", "pod", name, "-n", ns, "--no-headers").stdout.split()
    return dict(zip(("name", "ready", "status", "restarts"), fields, strict=False))


def status_of(kubeconfig: Path, ns: str, name: str) -> str:
    return columns(kubeconfig, ns, name).get("status", "")


def test_init_containers_run_in_order_before_the_app(kubeconfig: Path, ns: str) -> None:
    name = unique("init")
    apply(kubeconfig, ns, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 0
          volumes: [{{name: work, emptyDir: {{}}}}]
          initContainers:
          - name: first
            image: busybox
            command: ["sh", "-c", "sleep 8; echo one >> /work/log; echo first-done"]
            volumeMounts: [{{name: work, mountPath: /work}}]
          - name: second
            image: busybox
            command: ["sh", "-c", "sleep 6; echo two >> /work/log"]
            volumeMounts: [{{name: work, mountPath: /work}}]
          containers:
          - name: app
            image: busybox
            command: ["sh", "-c", "cat /work/log; exec sleep 3600"]
            volumeMounts: [{{name: work, mountPath: /work}}]
        """)
    seen = wait_for("kubectl to show the pod initializing", lambda: (s := status_of(kubeconfig, ns, name))
                    in ("Init:0/2", "Init:1/2") and s, INIT_TIMEOUT_S, interval=0.3)
    assert seen in ("Init:0/2", "Init:1/2")
    while_init = pod_json(kubeconfig, ns, name)
    assert while_init["status"]["phase"] == "Pending"
    app = while_init["status"]["containerStatuses"][0]
    assert app["state"]["waiting"]["reason"] == "PodInitializing"
    wait_for("the pod running", lambda: status_of(kubeconfig, ns, name) == "Running", INIT_TIMEOUT_S)
    logs = wait_for("the app's output", lambda: kubectl(kubeconfig, "logs", name, "-n", ns, "-c", "app").stdout)
    assert logs == "one\ntwo\n"  # both ran, in order, before the app, into the pod's emptyDir
    assert kubectl(kubeconfig, "logs", name, "-n", ns, "-c", "first").stdout == "first-done\n"
    done = pod_json(kubeconfig, ns, name)["status"]
    conditions = {c["type"]: c["status"] for c in done["conditions"]}
    assert conditions["Initialized"] == "True"
    assert [s["state"]["terminated"]["exitCode"] for s in done["initContainerStatuses"]] == [0, 0]
    described = kubectl(kubeconfig, "describe", "pod", name, "-n", ns).stdout
    assert "Init Containers:" in described and "first:" in described
    listed = run("get", "pods", "-n", ns).stdout
    assert any(line.split()[0] == name and "Running" in line for line in listed.splitlines()[1:]), listed


def test_failing_init_container_holds_the_app_back(kubeconfig: Path, ns: str) -> None:
    looping, failed = unique("initloop"), unique("initfail")
    for name, policy in ((looping, "Always"), (failed, "Never")):
        apply(kubeconfig, ns, f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}}}
            spec:
              restartPolicy: {policy}
              terminationGracePeriodSeconds: 0
              initContainers:
              - {{name: broken, image: busybox, command: ["sh", "-c", "echo broken; exit 3"]}}
              containers:
              - {{name: app, image: busybox, command: ["sleep", "3600"]}}
            """)
    wait_for("the Never pod to fail", lambda: pod_json(kubeconfig, ns, failed)["status"].get("phase") == "Failed",
             INIT_TIMEOUT_S)
    assert status_of(kubeconfig, ns, failed) == "Init:Error"
    wait_for("the init container to be restarted with back-off",
             lambda: pod_json(kubeconfig, ns, looping)["status"]["initContainerStatuses"][0]["restartCount"] >= 1,
             INIT_TIMEOUT_S)
    wait_for("kubectl to show the crash loop", lambda: status_of(kubeconfig, ns, looping)
             in ("Init:Error", "Init:CrashLoopBackOff"), INIT_TIMEOUT_S, interval=0.3)
    assert kubectl(kubeconfig, "logs", looping, "-n", ns, "-c", "broken").stdout == "broken\n"
    for name in (looping, failed):
        status = pod_json(kubeconfig, ns, name)["status"]
        assert status["phase"] in ("Pending", "Failed")
        app = status["containerStatuses"][0]
        assert "waiting" in app["state"] and app["restartCount"] == 0, app  # the app never started
        assert not app.get("containerID")


def test_native_sidecar_runs_beside_the_app_and_ends_with_a_job_like_pod(kubeconfig: Path, ns: str) -> None:
    server, job = unique("sidecar"), unique("sidejob")
    sidecar = """\
              initContainers:
              - name: side
                image: busybox
                restartPolicy: Always
                command: ["sh", "-c", "trap 'exit 0' TERM; while :; do date > /work/beat; sleep 1; done"]
                volumeMounts: [{name: work, mountPath: /work}]
                readinessProbe: {exec: {command: ["test", "-s", "/work/beat"]}, periodSeconds: 1}
    """
    for name, policy, command in ((server, "Always", "exec sleep 3600"),
                                  (job, "Never", "until test -s /work/beat; do sleep 1; done; echo job-done")):
        apply(kubeconfig, ns, f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}}}
            spec:
              restartPolicy: {policy}
              terminationGracePeriodSeconds: 5
              volumes: [{{name: work, emptyDir: {{}}}}]
{sidecar}
              containers:
              - name: app
                image: busybox
                command: ["sh", "-c", "{command}"]
                volumeMounts: [{{name: work, mountPath: /work}}]
            """)
    cols = wait_for("the sidecar pod running with both containers ready",
                    lambda: (c := columns(kubeconfig, ns, server)).get("ready") == "2/2" and c, INIT_TIMEOUT_S)
    assert cols["status"] == "Running"
    side = pod_json(kubeconfig, ns, server)["status"]["initContainerStatuses"][0]
    assert side["name"] == "side" and "running" in side["state"] and side["ready"] is True
    beat = kubectl(kubeconfig, "exec", server, "-n", ns, "-c", "side", "--", "cat", "/work/beat")
    assert beat.stdout.strip(), beat.stderr  # exec reaches the sidecar, which shares the pod's emptyDir
    wait_for("the Job-like pod to succeed",
             lambda: pod_json(kubeconfig, ns, job)["status"].get("phase") == "Succeeded", INIT_TIMEOUT_S)
    assert kubectl(kubeconfig, "logs", job, "-n", ns, "-c", "app").stdout == "job-done\n"
    side = pod_json(kubeconfig, ns, job)["status"]["initContainerStatuses"][0]
    assert "terminated" in side["state"]  # stopped once the app completed, without failing the pod
    assert "running" in pod_json(kubeconfig, ns, server)["status"]["initContainerStatuses"][0]["state"]
