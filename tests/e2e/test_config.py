"""ConfigMaps, Secrets and ServiceAccounts on a real cluster, through kubectl and the minik8s CLI: pods
consume them as env and as volumes, a changed ConfigMap or Secret reaches the mounted files without a
restart, a missing one holds the container until it is created, and every namespace has a default
ServiceAccount."""

from __future__ import annotations

import base64
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from minik8s import Client
from tests.e2e.conftest import run, unique, wait_for, wait_running

#: A changed ConfigMap must show up in the mounted files within 10 s; the poll allows twice that.
UPDATE_TIMEOUT_S = 20.0


def kubectl(kc: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def in_pod(ns: str, pod: str, *cmd: str) -> str:
    return run("exec", "-n", ns, pod, "--", *cmd).stdout


def waiting_state(client: Client, name: str, ns: str) -> Any:
    pod = client.get("Pod", name, ns)
    statuses = (pod.status.containerStatuses if pod.status else None) or []
    return statuses[0].state.waiting if statuses and statuses[0].state else None


def test_pod_consumes_configmap_and_secret_as_env_and_volumes(client: Client, kubeconfig: Path, ns: str) -> None:
    cm, secret, pod = unique("app-cfg"), unique("app-sec"), unique("consumer")
    config = textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: {cm}}}
        data:
          MODE: prod
          app.conf: "level=1"
        """)
    secret_manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: {secret}}}
        stringData: {{PASSWORD: s3cret, token: abc}}
        """)
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=config + "---\n" + secret_manifest + textwrap.dedent(f"""\
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {pod}}}
        spec:
          terminationGracePeriodSeconds: 0
          volumes:
          - name: cfg
            configMap:
              name: {cm}
              items: [{{key: app.conf, path: conf/app.conf, mode: 0600}}]
          - name: cfg-all
            configMap: {{name: {cm}}}
          - name: sec
            secret: {{secretName: {secret}, defaultMode: 0400}}
          containers:
          - name: main
            image: busybox
            command: [sleep, "3600"]
            env:
            - name: APP_MODE
              valueFrom: {{configMapKeyRef: {{name: {cm}, key: MODE}}}}
            - name: DB_PASSWORD
              valueFrom: {{secretKeyRef: {{name: {secret}, key: PASSWORD}}}}
            envFrom:
            - prefix: CFG_
              configMapRef: {{name: {cm}}}
            - secretRef: {{name: {secret}}}
            volumeMounts:
            - {{name: cfg, mountPath: /etc/app}}
            - {{name: cfg-all, mountPath: /etc/all}}
            - {{name: sec, mountPath: /etc/sec}}
        """))
    wait_running(client, pod, namespace=ns)
    env = dict(line.split("=", 1) for line in in_pod(ns, pod, "env").splitlines() if "=" in line)
    assert env["APP_MODE"] == "prod" and env["DB_PASSWORD"] == "s3cret"
    assert env["CFG_MODE"] == "prod" and env["PASSWORD"] == "s3cret" and env["token"] == "abc"
    assert "CFG_app.conf" in env  # '.' is allowed in a variable name, as in Kubernetes
    assert in_pod(ns, pod, "cat", "/etc/app/conf/app.conf") == "level=1"
    assert in_pod(ns, pod, "ls", "/etc/app").split() == ["conf"]  # only the listed item
    assert in_pod(ns, pod, "stat", "-L", "-c", "%a", "/etc/app/conf/app.conf").strip() == "600"
    assert in_pod(ns, pod, "stat", "-L", "-c", "%a", "/etc/all/MODE").strip() == "644"
    assert in_pod(ns, pod, "stat", "-L", "-c", "%a", "/etc/sec/PASSWORD").strip() == "400"
    assert in_pod(ns, pod, "cat", "/etc/sec/PASSWORD") == "s3cret"
    assert in_pod(ns, pod, "readlink", "/etc/all/MODE").strip() == "..data/MODE"
    read_only = run("exec", "-n", ns, pod, "--", "sh", "-c", "echo x > /etc/all/new", check=False)
    assert read_only.returncode != 0

    changed = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=config.replace("level=1", "level=2"))
    assert f"configmap/{cm} configured" in changed.stdout
    assert wait_for("the changed ConfigMap in the mounted file",
                    lambda: in_pod(ns, pod, "cat", "/etc/app/conf/app.conf") == "level=2", timeout=UPDATE_TIMEOUT_S)
    assert in_pod(ns, pod, "cat", "/etc/all/app.conf") == "level=2"
    statuses = client.get("Pod", pod, ns).status.containerStatuses
    assert statuses[0].restartCount == 0
    assert in_pod(ns, pod, "sh", "-c", "echo $APP_MODE").strip() == "prod"  # env is fixed at container start

    # the same for a Secret: the mounted file changes in place, the container is not restarted
    changed = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=secret_manifest.replace("s3cret", "n3w-secret"))
    assert f"secret/{secret} configured" in changed.stdout
    assert wait_for("the changed Secret in the mounted file",
                    lambda: in_pod(ns, pod, "cat", "/etc/sec/PASSWORD") == "n3w-secret", timeout=UPDATE_TIMEOUT_S)
    assert in_pod(ns, pod, "cat", "/etc/sec/token") == "abc"
    assert in_pod(ns, pod, "stat", "-L", "-c", "%a", "/etc/sec/PASSWORD").strip() == "400"  # defaultMode kept
    statuses = client.get("Pod", pod, ns).status.containerStatuses
    assert statuses[0].restartCount == 0
    assert in_pod(ns, pod, "sh", "-c", "echo $DB_PASSWORD").strip() == "s3cret"  # env is fixed at container start
    kubectl(kubeconfig, "delete", "-n", ns, "pod", pod, "--grace-period=0", "--force")
    kubectl(kubeconfig, "delete", "-n", ns, "configmap", cm)
    kubectl(kubeconfig, "delete", "-n", ns, "secret", secret)


def test_missing_configmap_holds_the_container_until_it_exists(client: Client, ns: str) -> None:
    cm, pod = unique("late-cfg"), unique("waiter")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {pod}}}
        spec:
          terminationGracePeriodSeconds: 0
          containers:
          - name: main
            image: busybox
            command: [sleep, "3600"]
            env:
            - name: GREETING
              valueFrom: {{configMapKeyRef: {{name: {cm}, key: greeting}}}}
        """))
    waiting = wait_for("CreateContainerConfigError", lambda: (w := waiting_state(client, pod, ns)) and
                       w.reason == "CreateContainerConfigError" and w, timeout=60)
    assert waiting.message == f'configmap "{cm}" not found'
    assert client.get("Pod", pod, ns).status.phase == "Pending"
    table = run("get", "pod", "-n", ns, pod).stdout
    assert "CreateContainerConfigError" in table
    events = wait_for("a Warning event naming the ConfigMap", lambda: [
        e for e in client.list("Event", ns).items
        if e.involvedObject.name == pod and e.type == "Warning" and cm in (e.message or "")])
    assert events[0].reason == "Failed"

    run("apply", "-n", ns, "-f", "-", input=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {cm}}}\n"
                                   "data: {greeting: hello}\n")
    wait_running(client, pod, timeout=60, namespace=ns)
    assert in_pod(ns, pod, "sh", "-c", "echo $GREETING").strip() == "hello"
    run("delete", "pod", "-n", ns, pod, "--grace-period", "0")
    run("delete", "configmap", "-n", ns, cm)


def test_optional_missing_references_do_not_block(client: Client, ns: str) -> None:
    pod = unique("optional")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {pod}}}
        spec:
          terminationGracePeriodSeconds: 0
          volumes:
          - name: maybe
            configMap: {{name: no-such-cm, optional: true}}
          containers:
          - name: main
            image: busybox
            command: [sleep, "3600"]
            env:
            - name: MAYBE
              valueFrom: {{secretKeyRef: {{name: no-such-secret, key: k, optional: true}}}}
            envFrom:
            - configMapRef: {{name: no-such-cm, optional: true}}
            volumeMounts: [{{name: maybe, mountPath: /maybe}}]
        """))
    wait_running(client, pod, namespace=ns)
    assert in_pod(ns, pod, "sh", "-c", "echo ${MAYBE-unset}").strip() == "unset"
    assert in_pod(ns, pod, "ls", "/maybe").split() == []
    run("delete", "pod", "-n", ns, pod, "--grace-period", "0")


def test_tables_bad_input_and_default_service_account(client: Client, kubeconfig: Path, ns: str) -> None:
    cm, secret, fresh = unique("tbl-cm"), unique("tbl-sec"), unique("cfg-ns")
    # a manifest here; the generators (`kubectl create configmap`, protobuf bodies) are test_kubectl_generators'
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-",
            input=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {cm}}}\ndata: {{a: '1', b: '2'}}\n")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: {secret}}}
        type: kubernetes.io/basic-auth
        stringData: {{username: admin, password: pw}}
        """))
    # the namespace is new: its default ServiceAccount comes from a controller, a moment after it
    tables = wait_for("the namespace's default ServiceAccount listed", lambda: out if "serviceaccount/default" in (
        out := kubectl(kubeconfig, "get", "cm,secret,sa", "-n", ns).stdout) else None, timeout=30)
    assert "NAME" in tables and "DATA" in tables and "TYPE" in tables and "SECRETS" in tables
    lines = tables.splitlines()
    assert any(line.split()[:2] == [f"configmap/{cm}", "2"] for line in lines)
    assert any(line.split()[:3] == [f"secret/{secret}", "kubernetes.io/basic-auth", "2"] for line in lines)
    assert any(line.split()[:2] == ["serviceaccount/default", "0"] for line in lines)
    assert run("get", "cm", "-n", ns, cm).stdout.split()[:5] == ["NAME", "DATA", "AGE", cm, "2"]
    stored = client.get("Secret", secret, ns)
    assert base64.b64decode(stored.data["password"]) == b"pw" and "stringData" not in stored.to_dict()
    described = run("describe", "secret", "-n", ns, secret).stdout
    assert "password:  2 bytes" in described and "kubernetes.io/basic-auth" in described and "pw\n" not in described

    bad = run("apply", "-n", ns, "-f", "-", check=False, input=textwrap.dedent("""\
        apiVersion: v1
        kind: Secret
        metadata: {name: bad-b64}
        data: {password: "not base64!"}
        """))
    assert bad.returncode == 1 and "data[password]" in bad.stderr and "not base64!" not in bad.stderr
    assert kubectl(kubeconfig, "get", "secret", "-n", ns, "bad-b64", check=False).returncode != 0

    kubectl(kubeconfig, "apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {fresh}}}\n")
    wait_for("the default ServiceAccount in a new namespace",
             lambda: "default" in kubectl(kubeconfig, "get", "sa", "-n", fresh, check=False).stdout, timeout=30)
    kubectl(kubeconfig, "delete", "sa", "default", "-n", fresh)
    wait_for("the default ServiceAccount made again",
             lambda: "default" in kubectl(kubeconfig, "get", "sa", "-n", fresh, check=False).stdout, timeout=30)
    pod = unique("sa-pod")
    kubectl(kubeconfig, "apply", "-n", fresh, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {pod}}}
        spec:
          restartPolicy: Never
          containers: [{{name: main, image: busybox, command: [sleep, "1"]}}]
        """))
    sa = kubectl(kubeconfig, "get", "pod", pod, "-n", fresh, "-o", "jsonpath={.spec.serviceAccountName}").stdout
    assert sa == "default"
    kubectl(kubeconfig, "delete", "namespace", fresh)
    kubectl(kubeconfig, "delete", "-n", ns, "configmap", cm)
    kubectl(kubeconfig, "delete", "-n", ns, "secret", secret)
