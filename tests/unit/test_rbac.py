"""RBAC logic without a server: rule matching, bindings, the union, impersonation, request attributes,
the bootstrap policy (each component gets what it calls and no more) and the RBAC kinds' validation."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from minik8s.api import kinds as k
from minik8s.apiserver.authfilter import attributes_of, forbidden, impersonated
from minik8s.apiserver.resources import Resources
from minik8s.auth import policy
from minik8s.auth import user as u
from minik8s.auth.authn import TokenAuthenticator
from minik8s.auth.authz import Attributes, Decision, PrivilegedGroups, UnionAuthorizer, request_attributes
from minik8s.auth.rbac import RBACAuthorizer, Rule
from minik8s.errors import BadRequest, Forbidden

ALICE = u.UserInfo("alice", ("dev", u.AUTHENTICATED))
DEFAULT_SA = u.service_account_user("default", "default")


def attrs(verb: str, resource: str = "", ns: str = "", name: str = "", group: str = "", sub: str = "",
          who: u.UserInfo = ALICE, path: str = "") -> Attributes:
    if path:
        return Attributes(who, verb, False, path=path)
    return Attributes(who, verb, True, group, "v1", resource, sub, ns, name)


def role(kind: str, name: str, rules: list[dict[str, Any]], ns: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(kind: str, name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]],
            ns: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": role_name},
            "subjects": subjects}


def authorizer_with(*objs: dict[str, Any]) -> RBACAuthorizer:
    rbac = RBACAuthorizer()
    for obj in objs:
        rbac.apply(obj["kind"], obj)
    return rbac


def bootstrap_authorizer() -> RBACAuthorizer:
    return authorizer_with(*policy.bootstrap_objects())


# --- rules ----------------------------------------------------------------------------------

def test_rule_matches_verbs_groups_resources_and_names() -> None:
    r = Rule.of({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]})
    assert r.allows(attrs("get", "pods", "d", "web"))
    assert not r.allows(attrs("get", "pods", "d", "db"))
    assert not r.allows(attrs("delete", "pods", "d", "web"))
    assert not r.allows(attrs("get", "pods", "d", "web", group="apps"))
    assert not r.allows(attrs("list", "pods", "d"))  # resourceNames never match a nameless list


def test_rule_subresources_need_their_own_grant() -> None:
    pods = Rule.of({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    logs = Rule.of({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]})
    any_status = Rule.of({"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/status"]})
    assert pods.allows(attrs("get", "pods", "d", "p"))
    assert not pods.allows(attrs("get", "pods", "d", "p", sub="log"))
    assert logs.allows(attrs("get", "pods", "d", "p", sub="log")) and not logs.allows(attrs("get", "pods", "d", "p"))
    assert any_status.allows(attrs("update", "deployments", "d", "x", group="apps", sub="status"))
    assert not any_status.allows(attrs("update", "deployments", "d", "x", group="apps"))


def test_rule_stars_and_non_resource_urls() -> None:
    star = Rule.of({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    assert star.allows(attrs("deletecollection", "anything", group="x.io", sub="scale"))
    assert not star.allows(attrs("get", path="/healthz"))  # resource rules never grant URLs
    urls = Rule.of({"verbs": ["get"], "nonResourceURLs": ["/apis/*", "/version"]})
    assert urls.allows(attrs("get", path="/apis/apps/v1")) and urls.allows(attrs("get", path="/version"))
    assert not urls.allows(attrs("get", path="/version/x")) and not urls.allows(attrs("post", path="/version"))
    assert not urls.allows(attrs("get", "pods"))


# --- bindings -------------------------------------------------------------------------------

def test_role_binding_grants_only_in_its_namespace() -> None:
    rbac = authorizer_with(
        role("ClusterRole", "reader", [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]),
        binding("RoleBinding", "r", "ClusterRole", "reader", [{"kind": "User", "name": "alice"}], "team"))
    assert rbac.authorize(attrs("get", "pods", "team", "x")).allowed
    assert not rbac.authorize(attrs("get", "pods", "other", "x")).allowed
    assert not rbac.authorize(attrs("get", "pods", "", "")).allowed  # not cluster-wide


def test_cluster_role_binding_groups_and_service_accounts() -> None:
    rbac = authorizer_with(
        role("ClusterRole", "lister", [{"verbs": ["list"], "apiGroups": [""], "resources": ["nodes"]}]),
        role("Role", "cm", [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}], "apps"),
        binding("ClusterRoleBinding", "devs", "ClusterRole", "lister", [{"kind": "Group", "name": "dev"}]),
        # a ServiceAccount subject without a namespace is the binding's namespace's
        binding("RoleBinding", "sa", "Role", "cm", [{"kind": "ServiceAccount", "name": "bot"}], "apps"))
    assert rbac.authorize(attrs("list", "nodes")).allowed
    bot = u.service_account_user("apps", "bot")
    assert rbac.authorize(attrs("get", "configmaps", "apps", "c", who=bot)).allowed
    other_bot = u.service_account_user("web", "bot")
    assert not rbac.authorize(attrs("get", "configmaps", "apps", "c", who=other_bot)).allowed
    assert "RoleBinding \"sa\"" in rbac.authorize(attrs("get", "configmaps", "apps", "c", who=bot)).reason


def test_binding_to_a_missing_role_grants_nothing_and_changes_apply_at_once() -> None:
    rbac = authorizer_with(binding("ClusterRoleBinding", "b", "ClusterRole", "later",
                                   [{"kind": "User", "name": "alice"}]))
    ask = attrs("get", "secrets", "d", "s")
    assert not rbac.authorize(ask).allowed
    rbac.apply("ClusterRole", role("ClusterRole", "later", [{"verbs": ["get"], "apiGroups": [""],
                                                              "resources": ["secrets"]}]))
    assert rbac.authorize(ask).allowed  # the memoized "no" was dropped with the change
    rbac.apply("ClusterRoleBinding", binding("ClusterRoleBinding", "b", "ClusterRole", "later", []), deleted=True)
    assert not rbac.authorize(ask).allowed


def test_union_first_allow_wins_and_masters_always_pass() -> None:
    class Deny:
        def authorize(self, a: Attributes) -> Decision:
            return Decision(False, "node authorizer: not a node")

    union = UnionAuthorizer([Deny(), PrivilegedGroups(), RBACAuthorizer()])
    admin = u.UserInfo("admin", (u.SYSTEM_MASTERS, u.AUTHENTICATED))
    assert union.authorize(attrs("delete", "nodes", who=admin)).allowed
    no = union.authorize(attrs("delete", "nodes"))
    assert not no.allowed and no.reason == "node authorizer: not a node"


def test_rules_for_lists_a_users_grants() -> None:
    rbac = bootstrap_authorizer()
    rules = rbac.rules_for(DEFAULT_SA, "default")
    assert all(r.non_resource_urls or r.api_groups <= {"authorization.k8s.io", "authentication.k8s.io"}
               for r in rules)


# --- request attributes and the 403 -----------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "query", "want"), [
    ("GET", "/api/v1/namespaces/d/pods", "", ("list", "", "pods", "", "d", "")),
    ("GET", "/api/v1/namespaces/d/pods", "watch=true", ("watch", "", "pods", "", "d", "")),
    ("GET", "/api/v1/namespaces/d/pods/p/log", "", ("get", "", "pods", "log", "d", "p")),
    ("POST", "/api/v1/namespaces/d/pods/p/binding", "", ("create", "", "pods", "binding", "d", "p")),
    ("DELETE", "/apis/apps/v1/namespaces/d/deployments", "", ("deletecollection", "apps", "deployments", "", "d", "")),
    ("GET", "/api/v1/namespaces/d", "", ("get", "", "namespaces", "", "d", "d")),
    ("PATCH", "/api/v1/nodes/n1/status", "", ("patch", "", "nodes", "status", "", "n1")),
])
def test_request_attributes(method: str, path: str, query: str, want: tuple[str, ...]) -> None:
    a = request_attributes(ALICE, method, path, query)
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == want


def test_non_resource_requests_and_forbidden_wording() -> None:
    a = request_attributes(ALICE, "GET", "/apis/apps", "")
    assert not a.resource_request and a.path == "/apis/apps"
    err = forbidden(request_attributes(ALICE, "GET", "/api/v1/namespaces/d/pods", ""))
    assert isinstance(err, Forbidden) and err.code == 403
    assert err.message == ('pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
                           'in the namespace "d"')
    assert err.details == {"kind": "pods"}


def test_websocket_exec_needs_create() -> None:
    scope = {"type": "websocket", "path": "/api/v1/namespaces/d/pods/p/exec", "query_string": b"command=sh"}
    a = attributes_of(scope, ALICE)
    assert (a.verb, a.resource, a.subresource) == ("create", "pods", "exec")


# --- impersonation --------------------------------------------------------------------------

def test_impersonation_needs_the_impersonate_verb() -> None:
    rbac = authorizer_with(
        role("ClusterRole", "imp", [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"],
                                     "resourceNames": ["bob"]}]),
        binding("ClusterRoleBinding", "imp", "ClusterRole", "imp", [{"kind": "User", "name": "alice"}]))
    as_bob = impersonated(ALICE, [(b"impersonate-user", b"bob")], rbac)
    assert as_bob.name == "bob" and as_bob.groups == (u.AUTHENTICATED,)
    with pytest.raises(Forbidden, match='users "carol" is forbidden: User "alice" cannot impersonate resource "users"'):
        impersonated(ALICE, [(b"impersonate-user", b"carol")], rbac)
    with pytest.raises(Forbidden, match='groups "system:masters" is forbidden'):
        impersonated(ALICE, [(b"impersonate-user", b"bob"), (b"impersonate-group", b"system:masters")], rbac)
    with pytest.raises(BadRequest, match="need Impersonate-User"):
        impersonated(ALICE, [(b"impersonate-group", b"x")], rbac)
    assert impersonated(ALICE, [], rbac) is ALICE


def test_admin_impersonates_a_service_account_with_its_groups() -> None:
    admin = u.UserInfo("admin", (u.SYSTEM_MASTERS, u.AUTHENTICATED))
    sa = impersonated(admin, [(b"impersonate-user", b"system:serviceaccount:default:default")], PrivilegedGroups())
    assert sa.groups == (u.SERVICE_ACCOUNTS, "system:serviceaccounts:default", u.AUTHENTICATED)


# --- the bootstrap policy -------------------------------------------------------------------

def component(name: str) -> u.UserInfo:
    return u.UserInfo(name, (u.AUTHENTICATED,))


def test_default_service_account_can_do_nothing_but_discovery() -> None:
    rbac = bootstrap_authorizer()
    assert rbac.authorize(attrs("get", path="/apis", who=DEFAULT_SA)).allowed
    assert rbac.authorize(attrs("create", "selfsubjectaccessreviews", group="authorization.k8s.io",
                                who=DEFAULT_SA)).allowed
    for verb, resource in (("get", "pods"), ("list", "pods"), ("list", "secrets"), ("create", "pods")):
        assert not rbac.authorize(attrs(verb, resource, "default", who=DEFAULT_SA)).allowed


def test_each_component_gets_what_it_calls_and_no_more() -> None:
    rbac = bootstrap_authorizer()
    sched, cm, proxy = component(u.SCHEDULER), component(u.CONTROLLER_MANAGER), component(u.PROXY)
    dns, gw = component(u.DNS), component(u.GATEWAY)
    assert rbac.authorize(attrs("create", "pods", "d", "p", sub="binding", who=sched)).allowed
    assert rbac.authorize(attrs("watch", "nodes", who=sched)).allowed
    assert rbac.authorize(attrs("delete", "pods", "d", "p", who=sched)).allowed  # preemption's victims
    assert not rbac.authorize(attrs("update", "pods", "d", "p", who=sched)).allowed
    assert not rbac.authorize(attrs("get", "secrets", "d", "s", who=sched)).allowed
    assert rbac.authorize(attrs("create", "pods", "d", who=cm)).allowed
    assert rbac.authorize(attrs("patch", "replicasets", "d", "r", group="apps", who=cm)).allowed
    assert not rbac.authorize(attrs("list", "secrets", who=cm)).allowed
    assert rbac.authorize(attrs("update", "poddisruptionbudgets", "d", "b", group="policy", sub="status",
                                who=cm)).allowed  # the disruption controller
    assert rbac.authorize(attrs("create", "configmaps", "d", who=cm)).allowed  # kube-root-ca.crt
    assert not rbac.authorize(attrs("create", "clusterrolebindings", group="rbac.authorization.k8s.io",
                                    who=cm)).allowed
    assert rbac.authorize(attrs("watch", "endpoints", who=proxy)).allowed
    assert not rbac.authorize(attrs("update", "services", "d", "s", who=proxy)).allowed
    assert rbac.authorize(attrs("list", "dnses", group="minik8s.io", who=dns)).allowed
    assert not rbac.authorize(attrs("create", "services", "d", who=dns)).allowed
    assert rbac.authorize(attrs("create", "deployments", "kube-system", group="apps", who=gw)).allowed
    assert not rbac.authorize(attrs("create", "deployments", "default", group="apps", who=gw)).allowed
    assert rbac.authorize(attrs("update", "ingresses", "d", "i", group="networking.k8s.io", sub="status",
                                who=gw)).allowed


def test_view_edit_admin_ladder() -> None:
    def granted(cluster_role: str) -> RBACAuthorizer:
        return authorizer_with(*policy.bootstrap_objects(), binding(
            "RoleBinding", "b", "ClusterRole", cluster_role, [{"kind": "User", "name": "alice"}], "team"))

    view, edit, admin = granted("view"), granted("edit"), granted("admin")
    read, write = attrs("list", "deployments", "team", group="apps"), attrs("create", "deployments", "team",
                                                                            group="apps")
    secrets = attrs("get", "secrets", "team", "s")
    grant = attrs("create", "rolebindings", "team", group="rbac.authorization.k8s.io")
    assert view.authorize(read).allowed and not view.authorize(write).allowed
    assert not view.authorize(secrets).allowed
    assert edit.authorize(write).allowed and edit.authorize(secrets).allowed and not edit.authorize(grant).allowed
    assert admin.authorize(grant).allowed
    assert not admin.authorize(attrs("list", "deployments", "elsewhere", group="apps")).allowed


def test_bootstrap_objects_are_valid_kinds() -> None:
    for obj in policy.bootstrap_objects():
        info = k.by_kind(obj["apiVersion"], obj["kind"])
        model = info.model.model_validate(obj)
        assert info.validate(model) == [], obj["metadata"]["name"]


def test_reconcile_restores_lost_defaults_unless_autoupdate_is_off() -> None:
    default = next(o for o in policy.bootstrap_objects() if o["metadata"]["name"] == "view")
    stored = {**default, "rules": default["rules"][:1] + [{"verbs": ["get"], "apiGroups": ["x.io"],
                                                           "resources": ["things"]}]}
    fixed = policy.reconciled(default, stored)
    assert fixed is not None
    assert all(r in fixed["rules"] for r in default["rules"]) and stored["rules"][1] in fixed["rules"]
    assert policy.reconciled(default, default) is None
    off = {**stored, "metadata": {**stored["metadata"], "annotations": {policy.AUTOUPDATE: "false"}}}
    assert policy.reconciled(default, off) is None


# --- the kinds' validation ------------------------------------------------------------------

def validate(kind: str, obj: dict[str, Any]) -> list[tuple[str, str]]:
    info = k.lookup(kind)
    return info.validate(info.model.model_validate(obj))


def test_rbac_validation_names_the_field() -> None:
    causes = validate("Role", {"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]},
                                                                    {"verbs": [], "apiGroups": [""]}]})
    fields = [c[0] for c in causes]
    assert fields == ["rules[0].nonResourceURLs", "rules[1].verbs", "rules[1].resources"]
    causes = validate("ClusterRoleBinding", {"metadata": {"name": "b"},
                                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                         "kind": "Role", "name": "r"},
                                             "subjects": [{"kind": "ServiceAccount", "name": "sa"},
                                                          {"kind": "Robot", "name": "x"}]})
    assert [c[0] for c in causes] == ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]
    assert validate("ClusterRole", {"metadata": {"name": "system:x"}, "aggregationRule": {}})[0][0] == \
        "aggregationRule"
    assert validate("ClusterRole", {"metadata": {"name": "a/b"}})[0][0] == "metadata.name"


def test_binding_role_ref_is_immutable() -> None:
    strategy = k.lookup("RoleBinding").strategy(Resources.__new__(Resources))
    old = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"}}
    assert strategy.validate_update({"roleRef": {**old["roleRef"], "name": "b"}}, old)[0][0] == "roleRef"
    assert strategy.validate_update(old, old) == []


def test_subject_api_group_is_defaulted() -> None:
    model = k.lookup("RoleBinding").model.model_validate(
        {"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"},
         "subjects": [{"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "name": "s"}]})
    wire = model.to_dict()
    assert [s["apiGroup"] for s in wire["subjects"]] == ["rbac.authorization.k8s.io", ""]
    assert wire["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"


# --- component credentials --------------------------------------------------------------------

def test_component_tokens_are_distinct_private_and_stable(tmp_path: Path) -> None:
    from minik8s.cluster import bootstrap
    from minik8s.cluster.config import ClusterConfig

    cfg = ClusterConfig(state_dir=tmp_path)
    tokens = bootstrap.component_tokens(cfg)
    assert set(tokens) == set(bootstrap.COMPONENT_USERS) and len(set(tokens.values())) == len(tokens)
    path = tmp_path / bootstrap.COMPONENT_TOKENS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bootstrap.component_tokens(cfg) == tokens
    authn = TokenAuthenticator.load(path)
    for component, token in tokens.items():
        found = authn.authenticate(token)
        assert found is not None and found.name == bootstrap.COMPONENT_USERS[component]
        assert not found.is_master
    admin = bootstrap.api_token(cfg)
    assert admin not in tokens.values() and authn.authenticate(admin) is None


# --- escalation -------------------------------------------------------------------------------

def test_missing_rules_lists_each_permission_not_held() -> None:
    from minik8s.auth.escalation import missing_rules

    held = [Rule.of({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]})]
    same = (Rule.of({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),)
    assert missing_rules(held, same, ALICE, "d") == []
    more = (Rule.of({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}),
            Rule.of({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}))
    assert missing_rules(held, more, ALICE, "d") == ['{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}',
                                                     '{APIGroups:[""], Resources:["pods"], Verbs:["*"]}']
    named = [Rule.of({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]})]
    any_pod = (Rule.of({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),)
    assert missing_rules(named, any_pod, ALICE, "d")  # a grant on one name does not cover every name


# --- protobuf request bodies ----------------------------------------------------------------------

def _pb_field(number: int, value: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out
    return varint(number << 3 | 2) + varint(len(value)) + value


def test_protobuf_self_subject_access_review_and_role_binding() -> None:
    from minik8s.apiserver import protobuf

    def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
        type_meta = _pb_field(1, api_version.encode()) + _pb_field(2, kind.encode())
        return protobuf.MAGIC + _pb_field(1, type_meta) + _pb_field(2, raw)

    attrs = _pb_field(1, b"dev") + _pb_field(2, b"list") + _pb_field(5, b"pods")
    review = envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", _pb_field(2, _pb_field(1, attrs)))
    assert protobuf.decode(review) == {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                       "spec": {"resourceAttributes": {"namespace": "dev", "verb": "list",
                                                                       "resource": "pods"}}}
    meta = _pb_field(1, b"rb") + _pb_field(11, _pb_field(1, b"team") + _pb_field(2, b"a"))
    subjects = _pb_field(2, _pb_field(1, b"User") + _pb_field(3, b"bob")) * 2
    ref = _pb_field(3, _pb_field(1, b"rbac.authorization.k8s.io") + _pb_field(2, b"Role") + _pb_field(3, b"r"))
    binding = protobuf.decode(envelope("rbac.authorization.k8s.io/v1", "RoleBinding",
                                       _pb_field(1, meta) + subjects + ref))
    assert binding["metadata"] == {"name": "rb", "labels": {"team": "a"}}
    assert binding["subjects"] == [{"kind": "User", "name": "bob"}] * 2
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}
    from minik8s.errors import UnsupportedMediaType
    with pytest.raises(UnsupportedMediaType, match="for v1/Pod"):
        protobuf.decode(envelope("v1", "Pod", b""))
    with pytest.raises(BadRequest, match="runs past the end"):
        protobuf.decode(protobuf.MAGIC + b"\x0a\x10ab")
