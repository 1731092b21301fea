"""RBAC through a real API server on a real etcd: token users from a token file get 403s naming user,
verb and resource until a binding grants them, access reviews and whoami answer for the caller,
impersonation needs `impersonate`, the bootstrap policy is created and reconciled at startup, and
WebSocket upgrades are authorized before they happen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from minik8s.apiserver.app import ApiServer, ApiServerConfig
from minik8s.apiserver.server import ServerThread
from minik8s.auth import user as u
from tests.conftest import TEST_TOKEN, free_port, uniq, wait_for

ALICE, SCHED = "alice-token-0123456789", "sched-token-0123456789"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
AUTHZ = "/apis/authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def server(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tokens = tmp_path_factory.mktemp("auth") / "tokens.csv"
    tokens.write_text(f'{ALICE},alice,u-1,"dev,qa"\n{SCHED},{u.SCHEDULER},u-2,\n')
    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, token_auth_file=str(tokens),
                                    port=port, pod_cidr="10.0.0.0/8"))
    thread = ServerThread(api.app, ["127.0.0.1"], port, name="rbac-apiserver")
    thread.start()
    yield f"http://127.0.0.1:{port}"
    thread.stop()
    api.rbac_cache.stop()


def call(server: str, token: str, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.request(method, server + path, json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}", **headers})


def admin(server: str, method: str, path: str, body: Any = None) -> httpx.Response:
    resp = call(server, TEST_TOKEN, method, path, body)
    assert resp.status_code < 300, resp.text
    return resp


def namespace(server: str) -> str:
    ns = uniq("rbac")
    admin(server, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


def role_binding(name: str, role: str, subjects: list[dict[str, str]], kind: str = "ClusterRole") -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": subjects}


def test_403_names_user_verb_and_resource_until_a_binding_grants_it(server: str) -> None:
    ns = namespace(server)
    denied = call(server, ALICE, "GET", f"/api/v1/namespaces/{ns}/pods")
    assert denied.status_code == 403
    status = denied.json()
    assert status["reason"] == "Forbidden" and status["details"] == {"kind": "pods"}
    assert status["message"] == (f'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
                                 f'in the namespace "{ns}"')
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
          role_binding("alice-view", "view", [{"kind": "User", "name": "alice"}]))
    wait_for(lambda: call(server, ALICE, "GET", f"/api/v1/namespaces/{ns}/pods").status_code == 200)
    # view reads, never writes, and only in that namespace
    assert call(server, ALICE, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                {"metadata": {"name": "x"}}).status_code == 403
    assert call(server, ALICE, "GET", "/api/v1/namespaces/default/pods").status_code == 403
    admin(server, "DELETE", f"{RBAC}/namespaces/{ns}/rolebindings/alice-view")
    wait_for(lambda: call(server, ALICE, "GET", f"/api/v1/namespaces/{ns}/pods").status_code == 403)


def test_group_subjects_and_roles(server: str) -> None:
    ns = namespace(server)
    rule = {"verbs": ["get", "create"], "apiGroups": [""], "resources": ["configmaps"]}
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/roles",
          {"metadata": {"name": "cm"}, "rules": [rule]})
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
          role_binding("qa-cm", "cm", [{"kind": "Group", "name": "qa"}], kind="Role"))
    wait_for(lambda: call(server, ALICE, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                          {"metadata": {"name": "made-by-alice"}}).status_code == 201)
    assert call(server, ALICE, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/made-by-alice").status_code == 403
    table = call(server, TEST_TOKEN, "GET", f"{RBAC}/namespaces/{ns}/rolebindings",
                 Accept="application/json;as=Table;v=v1;g=meta.k8s.io").json()
    assert [c["name"] for c in table["columnDefinitions"]][:3] == ["Name", "Role", "Age"]
    assert table["rows"][0]["cells"][1] == "Role/cm" and table["rows"][0]["cells"][4] == "qa"


def test_non_resource_urls_and_authentication(server: str) -> None:
    for path in ("/version", "/apis", "/api/v1"):
        assert call(server, ALICE, "GET", path).status_code == 200
    assert httpx.get(f"{server}/healthz").status_code == 200  # anonymous: public info only
    assert call(server, "nobody-knows-this", "GET", "/api/v1/pods").status_code == 401
    assert httpx.get(f"{server}/api/v1/pods").status_code == 401


def test_self_reviews_answer_for_the_caller(server: str) -> None:
    ns = namespace(server)
    ask = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
           "spec": {"resourceAttributes": {"namespace": ns, "verb": "list", "resource": "pods"}}}
    review = call(server, ALICE, "POST", f"{AUTHZ}/selfsubjectaccessreviews", ask)
    assert review.status_code == 201 and review.json()["status"]["allowed"] is False
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
          role_binding("alice-edit", "edit", [{"kind": "User", "name": "alice"}]))
    wait_for(lambda: call(server, ALICE, "POST", f"{AUTHZ}/selfsubjectaccessreviews",
                          ask).json()["status"]["allowed"])
    who = call(server, ALICE, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {})
    assert who.json()["status"]["userInfo"] == {"username": "alice", "uid": "u-1",
                                                 "groups": ["dev", "qa", u.AUTHENTICATED]}
    rules = call(server, ALICE, "POST", f"{AUTHZ}/selfsubjectrulesreviews", {"spec": {"namespace": ns}}).json()
    assert any("secrets" in r["resources"] and "create" in r["verbs"] for r in rules["status"]["resourceRules"])
    bad = call(server, ALICE, "POST", f"{AUTHZ}/selfsubjectaccessreviews", {"spec": {}})
    assert bad.status_code == 422 and "resourceAttributes" in bad.json()["message"]


def test_subject_access_review_is_for_those_allowed_to_create_it(server: str) -> None:
    sar = {"spec": {"user": "system:serviceaccount:default:default", "groups": ["system:serviceaccounts"],
                    "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}}
    assert admin(server, "POST", f"{AUTHZ}/subjectaccessreviews", sar).json()["status"]["allowed"] is False
    assert call(server, ALICE, "POST", f"{AUTHZ}/subjectaccessreviews", sar).status_code == 403
    lsar = admin(server, "POST", f"{AUTHZ}/namespaces/kube-system/localsubjectaccessreviews",
                 {"spec": {"user": u.GATEWAY, "resourceAttributes": {"verb": "create", "group": "apps",
                                                                      "resource": "deployments"}}}).json()
    assert lsar["status"]["allowed"] is True


def test_impersonation(server: str) -> None:
    sa = "system:serviceaccount:default:default"
    denied = call(server, TEST_TOKEN, "GET", "/api/v1/namespaces/default/pods", **{"Impersonate-User": sa})
    assert denied.status_code == 403 and f'User "{sa}" cannot list resource "pods"' in denied.json()["message"]
    who = call(server, TEST_TOKEN, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {},
               **{"Impersonate-User": sa}).json()["status"]["userInfo"]
    assert who["username"] == sa and "system:serviceaccounts:default" in who["groups"]
    sneaky = call(server, ALICE, "GET", "/api/v1/pods", **{"Impersonate-User": "admin",
                                                           "Impersonate-Group": "system:masters"})
    assert sneaky.status_code == 403
    assert sneaky.json()["message"].startswith('users "admin" is forbidden: User "alice" cannot impersonate')


def test_component_identity_is_least_privilege(server: str) -> None:
    assert call(server, SCHED, "GET", "/api/v1/nodes").status_code == 200
    assert call(server, SCHED, "GET", "/api/v1/pods?watch=true&timeoutSeconds=1").status_code == 200
    assert call(server, SCHED, "GET", "/api/v1/secrets").status_code == 403
    assert call(server, SCHED, "PUT", "/api/v1/namespaces/default/pods/x", {}).status_code == 403
    assert call(server, SCHED, "DELETE", "/api/v1/namespaces/default/services/x").status_code == 403


def test_websocket_exec_is_authorized_before_the_upgrade(server: str) -> None:
    url = server.replace("http", "ws") + "/api/v1/namespaces/default/pods/nope/exec?command=sh&stdout=1"
    with pytest.raises(InvalidStatus) as info:
        with connect(url, additional_headers={"Authorization": f"Bearer {ALICE}"},
                     subprotocols=["v5.channel.k8s.io"]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 403
    assert b'cannot create resource \\"pods/exec\\"' in info.value.response.body


def test_bad_rbac_objects_are_422_and_nothing_is_created(server: str) -> None:
    ns = namespace(server)
    bad = role_binding("bad", "view", [{"kind": "Robot", "name": "r2"}], kind="Secret")
    resp = call(server, TEST_TOKEN, "POST", f"{RBAC}/namespaces/{ns}/rolebindings", bad)
    assert resp.status_code == 422
    fields = [c["field"] for c in resp.json()["details"]["causes"]]
    assert fields == ["roleRef.kind", "subjects[0].kind"]
    assert call(server, TEST_TOKEN, "GET", f"{RBAC}/namespaces/{ns}/rolebindings/bad").status_code == 404
    good = admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
                 role_binding("good", "view", [{"kind": "User", "name": "x"}])).json()
    changed = {**good, "roleRef": {**good["roleRef"], "name": "edit"}}
    resp = call(server, TEST_TOKEN, "PUT", f"{RBAC}/namespaces/{ns}/rolebindings/good", changed)
    assert resp.status_code == 422 and "cannot change roleRef" in resp.text


def test_bootstrap_policy_is_created_and_reconciled_at_startup(server: str, etcd_endpoint: str,
                                                               tmp_path: Path) -> None:
    names = {o["metadata"]["name"] for o in admin(server, "GET", f"{RBAC}/clusterroles").json()["items"]}
    assert {"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
            "system:node-proxier", "system:kube-scheduler", "system:kube-controller-manager"} <= names
    view = admin(server, "GET", f"{RBAC}/clusterroles/view").json()
    trimmed = {**view, "rules": view["rules"][:1]}
    admin(server, "PUT", f"{RBAC}/clusterroles/view", trimmed)
    admin(server, "DELETE", f"{RBAC}/clusterrolebindings/system:discovery")
    port = free_port()  # a second API server starting on the same etcd puts them back
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port))
    thread = ServerThread(api.app, ["127.0.0.1"], port, name="rbac-apiserver-2")
    thread.start()
    try:
        again = admin(server, "GET", f"{RBAC}/clusterroles/view").json()
        assert len(again["rules"]) == len(view["rules"])
        admin(server, "GET", f"{RBAC}/clusterrolebindings/system:discovery")
    finally:
        thread.stop()
        api.rbac_cache.stop()


# --- the CLI ----------------------------------------------------------------------------------

def mk(server: str, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from click.testing import CliRunner

    from cli.main import cli

    config = tmp_path / f"config-{token[:5]}.json"
    config.write_text(json.dumps({"server": server, "token": token}))
    monkeypatch.setenv("MINIK8S_CONFIG", str(config))
    return CliRunner().invoke(cli, list(args))


def test_cli_can_i_and_whoami(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = namespace(server)
    no = mk(server, ALICE, tmp_path, monkeypatch, "auth", "can-i", "create", "deployments", "-n", ns)
    assert no.exit_code == 1 and no.output.strip() == "no"
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
          role_binding("alice-edit", "edit", [{"kind": "User", "name": "alice"}]))
    wait_for(lambda: mk(server, ALICE, tmp_path, monkeypatch, "auth", "can-i", "create", "deploy", "-n",
                        ns).exit_code == 0)
    assert mk(server, ALICE, tmp_path, monkeypatch, "auth", "can-i", "get", "pods", "--subresource", "log",
              "-n", ns).output.strip() == "yes"
    assert mk(server, ALICE, tmp_path, monkeypatch, "auth", "can-i", "get", "/version").exit_code == 0
    assert mk(server, ALICE, tmp_path, monkeypatch, "auth", "can-i", "list", "nodes").exit_code == 1
    who = mk(server, ALICE, tmp_path, monkeypatch, "auth", "whoami")
    assert who.exit_code == 0 and "Username    alice" in who.output and "qa" in who.output
    # the admin asks as the default ServiceAccount; alice may not impersonate anyone
    sa = "system:serviceaccount:default:default"
    as_sa = mk(server, TEST_TOKEN, tmp_path, monkeypatch, "auth", "can-i", "get", "pods", "--as", sa)
    assert as_sa.exit_code == 1 and as_sa.output.strip() == "no"
    refused = mk(server, ALICE, tmp_path, monkeypatch, "auth", "can-i", "get", "pods", "--as", sa)
    assert refused.exit_code == 1 and "cannot impersonate resource \"serviceaccounts\"" in refused.output
    bad = mk(server, TEST_TOKEN, tmp_path, monkeypatch, "auth", "can-i", "get", "pods", "--as-group", "g")
    assert bad.exit_code == 1 and "--as-group needs --as" in bad.output


def test_no_one_grants_what_they_do_not_hold(server: str) -> None:
    ns = namespace(server)
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
          role_binding("alice-admin", "admin", [{"kind": "User", "name": "alice"}]))
    wait_for(lambda: call(server, ALICE, "GET", f"{RBAC}/namespaces/{ns}/rolebindings").status_code == 200)
    # what alice holds she may hand on ...
    ok = call(server, ALICE, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
              role_binding("bob-view", "view", [{"kind": "User", "name": "bob"}]))
    assert ok.status_code == 201, ok.text
    ok = call(server, ALICE, "POST", f"{RBAC}/namespaces/{ns}/roles",
              {"metadata": {"name": "pods"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
    assert ok.status_code == 201, ok.text
    # ... but not cluster-admin, nor a wildcard she lacks
    up = call(server, ALICE, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
              role_binding("me-root", "cluster-admin", [{"kind": "User", "name": "alice"}]))
    assert up.status_code == 403
    assert 'user "alice"' in up.json()["message"] and "not currently held" in up.json()["message"]
    star = call(server, ALICE, "POST", f"{RBAC}/namespaces/{ns}/roles",
                {"metadata": {"name": "all"}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]})
    assert star.status_code == 403 and 'Verbs:["*"]' in star.json()["message"]
    assert call(server, TEST_TOKEN, "GET", f"{RBAC}/namespaces/{ns}/rolebindings/me-root").status_code == 404
    # the `bind` verb on a role lets one bind it without holding it
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/roles",
          {"metadata": {"name": "binder"}, "rules": [{"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"],
                                                      "resources": ["clusterroles"],
                                                      "resourceNames": ["system:kube-scheduler"]}]})
    admin(server, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
          role_binding("alice-binder", "binder", [{"kind": "User", "name": "alice"}], kind="Role"))
    wait_for(lambda: call(server, ALICE, "POST", f"{RBAC}/namespaces/{ns}/rolebindings",
                          role_binding("sched", "system:kube-scheduler",
                                       [{"kind": "User", "name": "bob"}])).status_code == 201)


def test_cli_get_and_describe_rbac_kinds(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = namespace(server)
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(f"""apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: {ns}}}
rules:
- {{apiGroups: ["", apps], resources: [pods, deployments], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: readers, namespace: {ns}}}
subjects: [{{kind: Group, name: qa}}, {{kind: ServiceAccount, name: bot}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
""")
    applied = mk(server, TEST_TOKEN, tmp_path, monkeypatch, "apply", "-f", str(manifest))
    assert applied.exit_code == 0, applied.output
    table = mk(server, TEST_TOKEN, tmp_path, monkeypatch, "get", "rolebindings", "-n", ns, "-o", "wide").output
    assert table.splitlines()[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert f"{ns}/bot" in table and "Role/reader" in table
    role = mk(server, TEST_TOKEN, tmp_path, monkeypatch, "describe", "role", "reader", "-n", ns).output
    assert "deployments.apps" in role and "[get list]" in role
    binding = mk(server, TEST_TOKEN, tmp_path, monkeypatch, "describe", "rolebinding", "readers", "-n", ns).output
    assert "Kind:  Role" in binding and "ServiceAccount" in binding and "qa" in binding
    assert mk(server, TEST_TOKEN, tmp_path, monkeypatch, "get", "clusterroles").output.startswith("NAME")
