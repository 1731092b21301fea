"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Shapes, defaults, validation and `get` columns as in Kubernetes 1.32. What the rules mean (who
may do what) is the RBAC authorizer's (:mod:`minik8s.auth.rbac`). Role names may hold `:` (the
bootstrap roles are `system:...`), so they are checked as path segments, as Kubernetes does.
ClusterRole aggregation (`aggregationRule`) is not served: it is refused with a message naming it
rather than accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import Causes, check_labels

GROUP = "rbac.authorization.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
USER, GROUP_KIND, SERVICE_ACCOUNT = "User", "Group", "ServiceAccount"
SUBJECT_KINDS = (USER, GROUP_KIND, SERVICE_ACCOUNT)

Obj = dict[str, Any]


class PolicyRule(t.Model):
    verbs: list[str] | None = None
    apiGroups: list[str] | None = None
    resources: list[str] | None = None
    resourceNames: list[str] | None = None
    nonResourceURLs: list[str] | None = None


class Subject(t.Model):
    kind: str
    name: str
    apiGroup: str | None = None
    namespace: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_group(cls, values: Any) -> Any:
        """SetDefaults_Subject: Users and Groups are in the RBAC group, ServiceAccounts in the core one."""
        if isinstance(values, dict) and "apiGroup" not in values:
            values = {**values, "apiGroup": "" if values.get("kind") == SERVICE_ACCOUNT else GROUP}
        return values


class RoleRef(t.Model):
    apiGroup: str = GROUP
    kind: str
    name: str


class Role(t.TypedObject):
    rules: list[PolicyRule] | None = None


class ClusterRole(t.TypedObject):
    rules: list[PolicyRule] | None = None
    #: accepted by the model only so that the refusal names the field (see validate_cluster_role)
    aggregationRule: dict[str, Any] | None = None


class RoleBinding(t.TypedObject):
    subjects: list[Subject] | None = None
    roleRef: RoleRef


class ClusterRoleBinding(t.TypedObject):
    subjects: list[Subject] | None = None
    roleRef: RoleRef


# --- validation ------------------------------------------------------------------------------

def check_rbac_name(value: str | None, path: str, causes: Causes) -> None:
    """ValidateRBACName: any path segment (`system:kube-scheduler` is a valid role name)."""
    if not value:
        causes.append((path, "Required value: name or generateName is required"))
    elif value in (".", "..") or "/" in value or "%" in value:
        causes.append((path, f'Invalid value: "{value}": may not be "." or ".." and may not contain "/" or "%"'))


def _meta(obj: t.TypedObject, causes: Causes) -> None:
    if obj.metadata.name or not obj.metadata.generateName:
        check_rbac_name(obj.metadata.name, "metadata.name", causes)
    check_labels(obj.metadata.labels, "metadata.labels", causes)


def validate_rule(rule: PolicyRule, namespaced: bool, path: str, causes: Causes) -> None:
    if not rule.verbs:
        causes.append((f"{path}.verbs", "Required value: verbs must contain at least one value"))
    if rule.nonResourceURLs:
        if namespaced:
            causes.append((f"{path}.nonResourceURLs",
                           f"Invalid value: {rule.nonResourceURLs}: namespaced rules cannot apply to non-resource "
                           "URLs"))
        if rule.apiGroups or rule.resources or rule.resourceNames:
            causes.append((f"{path}.nonResourceURLs",
                           f"Invalid value: {rule.nonResourceURLs}: rules cannot apply to both regular resources "
                           "and non-resource URLs"))
        return
    if not rule.apiGroups:
        causes.append((f"{path}.apiGroups", "Required value: resource rules must supply at least one api group"))
    if not rule.resources:
        causes.append((f"{path}.resources", "Required value: resource rules must supply at least one resource"))


def _rules(rules: list[PolicyRule] | None, namespaced: bool, causes: Causes) -> None:
    for i, rule in enumerate(rules or []):
        validate_rule(rule, namespaced, f"rules[{i}]", causes)


def validate_role(role: Role) -> Causes:
    causes: Causes = []
    _meta(role, causes)
    _rules(role.rules, True, causes)
    return causes


def validate_cluster_role(role: ClusterRole) -> Causes:
    causes: Causes = []
    _meta(role, causes)
    if role.aggregationRule is not None:
        causes.append(("aggregationRule", "Forbidden: ClusterRole aggregation is not supported by minik8s: "
                                          "list the rules in `rules`"))
    _rules(role.rules, False, causes)
    return causes


def _subjects(subjects: list[Subject] | None, namespaced: bool, causes: Causes) -> None:
    for i, s in enumerate(subjects or []):
        path = f"subjects[{i}]"
        if not s.name:
            causes.append((f"{path}.name", "Required value"))
        if s.kind == SERVICE_ACCOUNT:
            if s.apiGroup:
                causes.append((f"{path}.apiGroup", f'Unsupported value: "{s.apiGroup}": supported values: ""'))
            if not namespaced and not s.namespace:
                causes.append((f"{path}.namespace", "Required value"))
        elif s.kind in (USER, GROUP_KIND):
            if s.apiGroup != GROUP:
                causes.append((f"{path}.apiGroup", f'Unsupported value: "{s.apiGroup}": supported values: "{GROUP}"'))
        else:
            causes.append((f"{path}.kind", f'Unsupported value: "{s.kind}": supported values: '
                                           '"ServiceAccount", "User", "Group"'))


def _role_ref(ref: RoleRef, namespaced: bool, causes: Causes) -> None:
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.apiGroup != GROUP:
        causes.append(("roleRef.apiGroup", f'Unsupported value: "{ref.apiGroup}": supported values: "{GROUP}"'))
    if ref.kind not in kinds:
        causes.append(("roleRef.kind", f'Unsupported value: "{ref.kind}": supported values: '
                                       + ", ".join(f'"{k}"' for k in kinds)))
    if not ref.name:
        causes.append(("roleRef.name", "Required value"))
    else:
        check_rbac_name(ref.name, "roleRef.name", causes)


def validate_role_binding(binding: RoleBinding) -> Causes:
    causes: Causes = []
    _meta(binding, causes)
    _role_ref(binding.roleRef, True, causes)
    _subjects(binding.subjects, True, causes)
    return causes


def validate_cluster_role_binding(binding: ClusterRoleBinding) -> Causes:
    causes: Causes = []
    _meta(binding, causes)
    _role_ref(binding.roleRef, False, causes)
    _subjects(binding.subjects, False, causes)
    return causes


def validate_binding_update(new: Obj, old: Obj) -> Causes:
    """A binding's roleRef never changes (delete and recreate it), as in Kubernetes."""
    if new.get("roleRef") != old.get("roleRef"):
        return [("roleRef", "Invalid value: cannot change roleRef")]
    return []


# --- printer columns (kubectl's) -------------------------------------------------------------

def created_at(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "<unknown>")


def role_ref(obj: Obj) -> str:
    ref = obj.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _subject_names(kind: str) -> Any:
    def column(obj: Obj) -> str:
        names = []
        for s in obj.get("subjects") or []:
            if s.get("kind") != kind:
                continue
            ns = s.get("namespace") or (obj.get("metadata") or {}).get("namespace")
            names.append(f"{ns}/{s['name']}" if kind == SERVICE_ACCOUNT else s["name"])
        return ", ".join(names)
    return column


ROLE_COLUMNS = [p.Column("NAME", p.name), p.Column("CREATED AT", created_at)]
BINDING_COLUMNS = [p.Column("NAME", p.name), p.Column("ROLE", role_ref), p.Column("AGE", p.age),
                   p.Column("USERS", _subject_names(USER), wide=True),
                   p.Column("GROUPS", _subject_names(GROUP_KIND), wide=True),
                   p.Column("SERVICEACCOUNTS", _subject_names(SERVICE_ACCOUNT), wide=True)]
