"""RBAC on the real cluster, through kubectl and the minik8s CLI: a ServiceAccount can do nothing until
a RoleBinding grants it, 403s name user, verb and resource, `auth can-i`/`whoami` answer, and each
control-plane component runs with its own, limited identity (never the admin's)."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from minik8s import Client
from minik8s.auth import user as u
from minik8s.auth.authn import TokenAuthenticator
from minik8s.cluster import bootstrap
from minik8s.cluster.config import ClusterConfig
from tests.e2e.conftest import run, unique, wait_for


def kubectl(kc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def namespace(cluster: None) -> Iterator[str]:
    ns = unique("rbac")
    run("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")
    yield ns
    run("delete", "namespace", ns, check=False)


def grant(ns: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {{name: pod-reader, namespace: {ns}}}
        rules:
        - apiGroups: [""]
          resources: [pods]
          verbs: [get, list]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {{name: read-pods, namespace: {ns}}}
        subjects:
        - kind: ServiceAccount
          name: default
        roleRef:
          apiGroup: rbac.authorization.k8s.io
          kind: Role
          name: pod-reader
        """)


def test_service_account_is_refused_until_a_role_binding_grants_it(namespace: str, kubeconfig: Path) -> None:
    sa = f"system:serviceaccount:{namespace}:default"
    can = kubectl(kubeconfig, f"--as={sa}", "auth", "can-i", "list", "pods", "-n", namespace)
    assert can.returncode == 1 and can.stdout.strip() == "no"
    refused = kubectl(kubeconfig, f"--as={sa}", "get", "pods", "-n", namespace)
    assert refused.returncode == 1
    assert (f'pods is forbidden: User "{sa}" cannot list resource "pods" in API group "" in the namespace '
            f'"{namespace}"') in refused.stderr
    mine = run("auth", "can-i", "get", "pods", "-n", namespace, "--as", sa, check=False)
    assert mine.returncode == 1 and mine.stdout.strip() == "no"

    assert "created" in run("apply", "-f", "-", input=grant(namespace)).stdout
    wait_for("the grant to reach the authorizer",
             lambda: kubectl(kubeconfig, f"--as={sa}", "auth", "can-i", "list", "pods", "-n",
                             namespace).returncode == 0)
    listed = kubectl(kubeconfig, f"--as={sa}", "get", "pods", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    assert run("auth", "can-i", "get", "pods", "-n", namespace, "--as", sa).stdout.strip() == "yes"
    # only what was granted, only where it was granted
    assert run("auth", "can-i", "delete", "pods", "-n", namespace, "--as", sa, check=False).returncode == 1
    assert run("auth", "can-i", "get", "pods", "-n", "default", "--as", sa, check=False).returncode == 1
    assert kubectl(kubeconfig, f"--as={sa}", "get", "secrets", "-n", namespace).returncode == 1

    table = run("get", "rolebindings", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert table[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert table[1].split()[:2] == ["read-pods", "Role/pod-reader"] and f"{namespace}/default" in table[1]
    described = kubectl(kubeconfig, "describe", "rolebinding", "read-pods", "-n", namespace)
    assert described.returncode == 0 and "ServiceAccount  default" in described.stdout

    run("delete", "rolebinding", "read-pods", "-n", namespace)
    wait_for("the revoked grant to reach the authorizer",
             lambda: kubectl(kubeconfig, f"--as={sa}", "auth", "can-i", "list", "pods", "-n",
                             namespace).returncode == 1)


def test_service_account_token_is_refused_until_a_role_binding_grants_it(namespace: str, kubeconfig: Path) -> None:
    """The account's own bearer token, as a pod would send it (no impersonation): 403, then a grant, then 200."""
    made = kubectl(kubeconfig, "create", "token", "default", "-n", namespace)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    refused = kubectl(kubeconfig, "--token", token, "get", "pods", "-n", namespace)
    assert refused.returncode == 1
    assert (f'User "system:serviceaccount:{namespace}:default" cannot list resource "pods"') in refused.stderr

    run("apply", "-f", "-", input=grant(namespace))
    wait_for("the grant to reach the authorizer",
             lambda: kubectl(kubeconfig, "--token", token, "get", "pods", "-n", namespace).returncode == 0)
    assert kubectl(kubeconfig, "--token", token, "get", "pods", "-n", "default").returncode == 1
    assert kubectl(kubeconfig, "--token", token, "get", "secrets", "-n", namespace).returncode == 1


def test_kubectl_creates_roles_and_bindings(namespace: str, kubeconfig: Path) -> None:
    made = kubectl(kubeconfig, "create", "role", "cm-editor", "--verb=get,create", "--resource=configmaps",
                   "-n", namespace)
    assert made.returncode == 0, made.stderr
    bound = kubectl(kubeconfig, "create", "rolebinding", "bob-cm", "--role=cm-editor", "--user=bob", "-n", namespace)
    assert bound.returncode == 0, bound.stderr
    wait_for("bob's grant", lambda: kubectl(kubeconfig, "--as=bob", "auth", "can-i", "create", "configmaps", "-n",
                                            namespace).returncode == 0)
    assert kubectl(kubeconfig, "--as=bob", "auth", "can-i", "delete", "configmaps", "-n",
                   namespace).returncode == 1
    roles = kubectl(kubeconfig, "get", "roles", "-n", namespace)
    assert roles.stdout.splitlines()[0].split() == ["NAME", "CREATED", "AT"]


def test_whoami_and_the_default_policy(cluster: None, kubeconfig: Path) -> None:
    who = kubectl(kubeconfig, "auth", "whoami")
    assert who.returncode == 0 and "admin" in who.stdout and u.SYSTEM_MASTERS in who.stdout
    mine = run("auth", "whoami").stdout
    assert "Username    admin" in mine
    roles = kubectl(kubeconfig, "get", "clusterroles", "-o", "name").stdout.split()
    for name in ("cluster-admin", "admin", "edit", "view", "system:node-proxier", "system:kube-scheduler",
                 "system:kube-controller-manager", "system:minik8s-dns", "system:minik8s-gateway"):
        assert f"clusterrole.rbac.authorization.k8s.io/{name}" in roles
    sa_rules = kubectl(kubeconfig, "--as=system:serviceaccount:default:default", "auth", "can-i", "--list")
    assert sa_rules.returncode == 0
    assert "pods" not in sa_rules.stdout.split()  # the default ServiceAccount gets discovery and reviews only


def test_components_run_with_their_own_least_privilege_identity(client: Client) -> None:
    cfg = ClusterConfig()
    path = cfg.state_dir / bootstrap.COMPONENT_TOKENS_FILE
    assert path.stat().st_mode & 0o077 == 0
    tokens = {info.name: token for token, info in TokenAuthenticator.load(path).entries.items()}
    assert set(tokens) == set(bootstrap.COMPONENT_USERS.values())
    assert bootstrap.api_token(cfg) not in tokens.values()
    ca = bootstrap.pki(cfg).ca_pem()

    def as_component(name: str, path: str) -> int:
        import ssl

        ctx = ssl.create_default_context(cadata=ca)
        resp = httpx.get(bootstrap.api_url(cfg) + path, headers={"Authorization": f"Bearer {tokens[name]}"},
                         verify=ctx, timeout=10)
        return resp.status_code

    assert as_component(u.SCHEDULER, "/api/v1/nodes") == 200
    assert as_component(u.SCHEDULER, "/api/v1/secrets") == 403
    assert as_component(u.PROXY, "/api/v1/endpoints") == 200
    assert as_component(u.PROXY, "/api/v1/pods") == 403
    assert as_component(u.DNS, "/apis/minik8s.io/v1/dnses") == 200
    assert as_component(u.CONTROLLER_MANAGER, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings") == 403
    # and the components work with them: the control plane reports healthy
    status = run("status").stdout
    hosted_in = {"netpol": "kubelet-"}  # the NetworkPolicy agent runs inside each node's kubelet actor
    for component in bootstrap.COMPONENT_USERS:
        rows = [line for line in status.splitlines() if hosted_in.get(component, component) in line]
        assert rows and all("UNHEALTHY" not in r and "healthy" in r for r in rows), status


def test_bad_rbac_manifest_is_refused_whole(namespace: str) -> None:
    bad = textwrap.dedent(f"""\
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {{name: wrong, namespace: {namespace}}}
        subjects: [{{kind: Robot, name: r2}}]
        roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Secret, name: x}}
        """)
    failed = run("apply", "-f", "-", input=bad, check=False)
    assert failed.returncode == 1
    assert "roleRef.kind" in failed.stderr and "subjects[0].kind" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert "No resources found" in run("get", "rolebindings", "-n", namespace).stderr
