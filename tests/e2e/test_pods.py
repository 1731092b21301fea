"""Pods on a real local cluster: multi-container, restarts, OOM, volumes, images, logs, exec."""

from __future__ import annotations

import textwrap

import docker

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from tests.e2e.conftest import run, unique, wait_for, wait_running


def apply(ns: str, manifest: str) -> str:
    return run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(manifest)).stdout


def test_two_containers_share_localhost_and_hostname(client: Client, ns: str) -> None:
    name = unique("web")
    out = apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          containers:
          - name: server
            image: busybox
            command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && httpd -f -p 8080 -h /www"]
            ports: [{{containerPort: 8080}}]
          - name: client
            image: busybox
            command: [sleep, "3600"]
        """)
    assert f"pod/{name} created" in out
    pod = wait_running(client, name, namespace=ns)
    assert pod.status.podIP and pod.status.podIP.startswith("10.244.")
    body = wait_for("HTTP answer on localhost", lambda: run(
        "exec", "-n", ns, name, "-c", "client", "--", "wget", "-qO-", "http://localhost:8080/", check=False).stdout)
    assert body.strip() == name
    table = run("get", "pods", "-n", ns, "-o", "wide").stdout
    line = next(row for row in table.splitlines() if row.startswith(name))
    assert "2/2" in line and "Running" in line and pod.status.podIP in line and pod.spec.nodeName in line
    run("delete", "pod", "-n", ns, name, "--grace-period", "1")
    assert name not in run("get", "pods", "-n", ns).stdout + run("get", "pods", "-n", ns).stderr


def test_crashing_container_restarts_with_backoff(client: Client, ns: str) -> None:
    name = unique("crash")
    apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          containers:
          - {{name: main, image: busybox, command: [sh, -c, "echo started; sleep 1; exit 3"]}}
        """)

    def restarted() -> int:
        pod = client.get("Pod", name, ns)
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        return statuses[0].restartCount if statuses and statuses[0].restartCount >= 2 else 0

    wait_for("two restarts", restarted, timeout=120)
    pod = client.get("Pod", name, ns)
    status = pod.status.containerStatuses[0]
    assert status.lastState and status.lastState.terminated and status.lastState.terminated.exitCode == 3
    assert "started" in run("logs", "-n", ns, name).stdout
    wait_for("CrashLoopBackOff", lambda: "CrashLoopBackOff" in run("get", "pod", "-n", ns, name).stdout, timeout=60)
    assert "BackOff" in run("describe", "pod", "-n", ns, name).stdout
    run("delete", "pod", "-n", ns, name, "--grace-period", "0")


def test_memory_limit_exceeded_is_oomkilled(client: Client, ns: str) -> None:
    name = unique("oom")
    apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: Never
          containers:
          - name: hog
            image: busybox
            command: [sh, -c, "x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); sleep 5"]
            resources: {{limits: {{memory: 20Mi}}}}
        """)

    def oom_reason() -> str | None:
        pod = client.get("Pod", name, ns)
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        term = statuses[0].state.terminated if statuses and statuses[0].state else None
        return term.reason if term else None

    assert wait_for("the container to be OOMKilled", oom_reason, timeout=90) == "OOMKilled"
    assert client.get("Pod", name, ns).status.phase == "Failed"
    run("delete", "pod", "-n", ns, name)


def test_empty_dir_is_shared_between_containers(client: Client, ns: str) -> None:
    name = unique("vol")
    apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          volumes: [{{name: shared, emptyDir: {{}}}}]
          containers:
          - name: writer
            image: busybox
            command: [sh, -c, "echo from-writer > /data/msg; sleep 3600"]
            volumeMounts: [{{name: shared, mountPath: /data}}]
          - name: reader
            image: busybox
            command: [sleep, "3600"]
            volumeMounts: [{{name: shared, mountPath: /in, readOnly: true}}]
        """)
    wait_running(client, name, namespace=ns)
    out = wait_for("the file written by the other container",
                   lambda: run("exec", "-n", ns, name, "-c", "reader", "--", "cat", "/in/msg", check=False).stdout)
    assert out.strip() == "from-writer"
    denied = run("exec", "-n", ns, name, "-c", "reader", "--", "sh", "-c", "echo x > /in/other", check=False)
    assert denied.returncode != 0
    run("delete", "pod", "-n", ns, name, "--grace-period", "1")


def test_env_workdir_args_and_cpu_limit(client: Client, ns: str) -> None:
    name = unique("env")
    apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          containers:
          - name: main
            image: busybox
            command: [sh, -c]
            args: ["pwd; echo $GREETING; sleep 3600"]
            workingDir: /tmp
            env: [{{name: GREETING, value: hello-env}}]
            resources: {{limits: {{cpu: 500m, memory: 64Mi}}, requests: {{cpu: 100m, memory: 32Mi}}}}
        """)
    wait_running(client, name, namespace=ns)
    logs = wait_for("logs", lambda: out if "hello-env" in (out := run("logs", "-n", ns, name).stdout) else None)
    assert logs.splitlines()[:2] == ["/tmp", "hello-env"]
    cgroup = "/sys/fs/cgroup/cpu"
    quota = run("exec", "-n", ns, name, "--", "cat", f"{cgroup}/cpu.cfs_quota_us", check=False).stdout.strip()
    period = run("exec", "-n", ns, name, "--", "cat", f"{cgroup}/cpu.cfs_period_us", check=False).stdout.strip()
    if quota and period:
        assert int(quota) / int(period) == 0.5
    described = run("describe", "pod", "-n", ns, name).stdout
    assert "Limits:" in described and "cpu=500m" in described and "Started" in described
    run("delete", "pod", "-n", ns, name, "--grace-period", "1")


def test_missing_image_reports_and_does_not_block_other_pods(client: Client, ns: str) -> None:
    bad, good = unique("noimg"), unique("ok")
    apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {bad}}}
        spec:
          containers: [{{name: main, image: "nosuchimage:1"}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {good}}}
        spec:
          containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
        """)
    wait_running(client, good, namespace=ns)

    def waiting() -> str | None:
        pod = client.get("Pod", bad, ns)
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        w = statuses[0].state.waiting if statuses and statuses[0].state else None
        return f"{w.reason}: {w.message}" if w and w.reason in ("ErrImagePull", "ImagePullBackOff") else None

    message = wait_for("ErrImagePull", waiting, timeout=60)
    assert "nosuchimage:1" in message and "minik8s image" in message
    assert client.get("Pod", bad, ns).status.phase == "Pending"
    run("delete", "pod", "-n", ns, bad, good, "--grace-period", "0")


def test_graceful_delete_gives_sigterm_time(client: Client, ns: str) -> None:
    name = unique("grace")
    apply(ns, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 20
          containers:
          - name: main
            image: busybox
            command: [sh, -c, "trap 'echo got-term; sleep 4; exit 0' TERM; while true; do sleep 0.2; done"]
        """)
    wait_running(client, name, namespace=ns)
    run("delete", "pod", "-n", ns, name, "--no-wait")
    # the container handles SIGTERM for a few seconds: meanwhile the pod is Terminating, not gone
    assert client.get("Pod", name, ns).metadata.deletionTimestamp is not None
    assert "Terminating" in run("get", "pod", "-n", ns, name).stdout
    assert "got-term" in wait_for("the SIGTERM handler's output",
                                  lambda: run("logs", "-n", ns, name, check=False).stdout)
    wait_for("the pod object to go away",
             lambda: name not in run("get", "pods", "-n", ns, "-o", "name").stdout, timeout=30)
    node = ClusterConfig().node(1)
    leftovers = docker.DockerClient(base_url=node.docker_url).containers.list(all=True, filters={"name": name})
    assert leftovers == []
