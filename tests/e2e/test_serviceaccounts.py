"""ServiceAccount tokens on the real cluster: the projected token volume, in-cluster API access through the
`kubernetes` Service, automountServiceAccountToken, `kubectl create token`, and revocation by deletion."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx

from minik8s import Client
from tests.e2e.conftest import run, unique, wait_for

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# What an in-cluster client does (`config.load_incluster_config()` reads the same env and files): the
# python:3 image has no `kubernetes` package, so plain urllib with CA verification.
IN_CLUSTER = textwrap.dedent("""\
    import json, os, ssl, sys, urllib.request, urllib.error
    d = "/var/run/secrets/kubernetes.io/serviceaccount"
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    token, ns = open(d + "/token").read(), open(d + "/namespace").read()
    ctx = ssl.create_default_context(cafile=d + "/ca.crt")
    def call(method, path, body=None):
        req = urllib.request.Request(f"https://{host}:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
    who = call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
               {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    pods = call("GET", f"/api/v1/namespaces/{ns}/pods")
    print(json.dumps({"host": host, "port": port, "ns": ns, "who": who, "pods": [pods[0], pods[1].get("message")]}))
    """)


POD_READER = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: read-pods, namespace: {ns}}}
subjects: [{{kind: ServiceAccount, name: default, namespace: {ns}}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
"""


def pod_manifest(name: str, namespace: str, extra_spec: str = "", account: str | None = None) -> str:
    sa = f"\n          serviceAccountName: {account}" if account else ""
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:{sa}{extra_spec}
          terminationGracePeriodSeconds: 0
          containers:
          - name: main
            image: "python:3"
            command: ["sleep", "3600"]
        """)


def exec_in(pod: str, namespace: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return run("exec", "-n", namespace, pod, "--", *cmd, check=False)


def whoami(token: str) -> httpx.Response:
    cfg = Client.from_config()
    ca, server = cfg.ssl_context, cfg.server
    cfg.close()
    return httpx.post(f"{server}/apis/authentication.k8s.io/v1/selfsubjectreviews", verify=ca or True,
                      headers={"Authorization": f"Bearer {token}"},
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def new_namespace(client: Client) -> str:
    ns = unique("sa")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    wait_for(f"default ServiceAccount in {ns}", lambda: client.get("ServiceAccount", "default", ns), timeout=30)
    wait_for(f"kube-root-ca.crt in {ns}", lambda: client.get("ConfigMap", "kube-root-ca.crt", ns), timeout=30)
    return ns


def test_kubernetes_service_points_at_the_api(client: Client) -> None:
    # `default` on purpose: the `kubernetes` Service lives there in every cluster (it only reads)
    svc = client.get("Service", "kubernetes", "default")
    assert svc.spec.clusterIP == "10.96.0.1"
    assert [(p.name, p.port) for p in svc.spec.ports] == [("https", 443)]
    ep = client.get("Endpoints", "kubernetes", "default").to_dict()
    assert ep["subsets"][0]["ports"][0]["port"] == 6443
    assert "kubernetes" in run("get", "svc", "-n", "default").stdout


def test_pod_calls_the_api_in_cluster_as_its_service_account(client: Client) -> None:
    ns = new_namespace(client)
    name = unique("incluster")
    try:
        run("apply", "-f", "-", input=pod_manifest(name, ns))
        pod = wait_for(f"pod {name} running", lambda: _running(client, name, ns), timeout=120)
        volumes = [v.name for v in pod.spec.volumes or []]
        assert any(v.startswith("kube-api-access-") for v in volumes), volumes
        listing = exec_in(name, ns, "ls", SA_DIR)
        assert listing.returncode == 0 and listing.stdout.split() == ["ca.crt", "namespace", "token"], listing
        assert exec_in(name, ns, "cat", f"{SA_DIR}/namespace").stdout == ns
        ca = exec_in(name, ns, "cat", f"{SA_DIR}/ca.crt").stdout
        assert ca == client.get("ConfigMap", "kube-root-ca.crt", ns).data["ca.crt"]
        write = exec_in(name, ns, "sh", "-c", f"echo x > {SA_DIR}/token")
        assert write.returncode != 0, "the token volume must be read-only"
        proc = exec_in(name, ns, "python3", "-c", IN_CLUSTER)
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout)
        assert (seen["host"], seen["port"], seen["ns"]) == ("10.96.0.1", "443", ns)
        status, review = seen["who"]
        assert status == 201
        assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:default"
        assert f"system:serviceaccounts:{ns}" in review["status"]["userInfo"]["groups"]
        code, message = seen["pods"]
        # the default account can do nothing until a RoleBinding grants it
        assert code == 403 and f'User "system:serviceaccount:{ns}:default" cannot list resource "pods"' in message, seen
        run("apply", "-f", "-", input=POD_READER.format(ns=ns))

        def listed() -> dict[str, Any] | None:
            again = exec_in(name, ns, "python3", "-c", IN_CLUSTER)
            got = json.loads(again.stdout) if again.returncode == 0 else {}
            return got if got and got["pods"][0] == 200 else None

        assert wait_for("the pod's own token to list pods once granted", listed, timeout=30)
        token = exec_in(name, ns, "cat", f"{SA_DIR}/token").stdout
        assert whoami(token).status_code == 201
        run("delete", "pod", name, "-n", ns, "--grace-period", "0")
        wait_for(f"pod {name} gone", lambda: _gone(client, "Pod", name, ns), timeout=60)
        assert wait_for("the deleted pod's token refused", lambda: whoami(token).status_code == 401, timeout=10)
    finally:
        run("delete", "namespace", ns, check=False)


def test_automount_false_mounts_nothing(client: Client) -> None:
    ns = new_namespace(client)
    name = unique("nomount")
    try:
        run("apply", "-f", "-", input=pod_manifest(name, ns, "\n          automountServiceAccountToken: false"))
        pod = wait_for(f"pod {name} running", lambda: _running(client, name, ns), timeout=120)
        assert not [v for v in pod.spec.volumes or [] if v.name.startswith("kube-api-access-")]
        assert exec_in(name, ns, "ls", SA_DIR).returncode != 0
        env = exec_in(name, ns, "env").stdout
        assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env and "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443" in env
        client.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet", "namespace": ns},
                       "automountServiceAccountToken": False})
        quiet = client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("quiet"),
                                                                               "namespace": ns},
                               "spec": {"serviceAccountName": "quiet",
                                        "containers": [{"name": "main", "image": "python:3"}]}})
        assert not [v for v in quiet.spec.volumes or [] if v.name.startswith("kube-api-access-")]
    finally:
        run("delete", "namespace", ns, check=False)


def test_kubectl_create_token_and_deleting_the_account_revokes_it(client: Client, kubeconfig: Path) -> None:
    ns = new_namespace(client)
    try:
        client.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", "namespace": ns}})
        made = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "token", "robot", "-n", ns,
                               "--duration", "15m"], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        who = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--token", token, "auth", "whoami",
                              "-o", "json"], capture_output=True, text=True, timeout=60)
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:robot"
        short = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "token", "robot", "-n", ns,
                                "--duration", "1m"], capture_output=True, text=True, timeout=60)
        assert short.returncode != 0 and "expirationSeconds" in short.stderr
        wrong = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "token", "robot", "-n", ns,
                                "--audience", "vault"], capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 0 and whoami(wrong.stdout.strip()).status_code == 401
        client.delete("ServiceAccount", "robot", ns)
        assert wait_for("the deleted account's token refused", lambda: whoami(token).status_code == 401, timeout=10)
    finally:
        run("delete", "namespace", ns, check=False)


def _running(client: Client, name: str, ns: str) -> object | None:
    pod = client.get("Pod", name, ns)
    statuses = (pod.status.containerStatuses if pod.status else None) or []
    return pod if pod.status and pod.status.phase == "Running" and statuses and all(s.ready for s in statuses) \
        else None


def _gone(client: Client, kind: str, name: str, ns: str) -> bool:
    try:
        client.get(kind, name, ns)
    except Exception:
        return True
    return False
