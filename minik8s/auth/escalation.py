"""RBAC's escalation check (Kubernetes' `ConfirmNoEscalation` and `bind`/`escalate` verbs), as a
validating admission plug-in on the four RBAC kinds.

Without it, anyone allowed to write a Role could write themselves any permission, and anyone allowed
to write a RoleBinding could bind themselves `cluster-admin`. So, as in Kubernetes:
- a Role/ClusterRole may only be written by someone who already holds every rule in it (in that
  namespace, or cluster-wide for a ClusterRole), unless they may `escalate` that role;
- a binding may only be written by someone who holds every rule of the role it names, unless they
  may `bind` that role.
Members of system:masters pass. Writes the API server makes itself (the bootstrap policy) carry no
request user and pass. The refusal lists the rules the writer lacks.
"""

from __future__ import annotations

from typing import Any

from minik8s import auth
from minik8s.api import rbac as api
from minik8s.apiserver.admission import AdmissionRequest
from minik8s.auth.authz import Attributes, Authorizer, Decision
from minik8s.auth.rbac import RBACAuthorizer, Rule, rules_of
from minik8s.auth.user import UserInfo
from minik8s.errors import Forbidden

Obj = dict[str, Any]
ROLE_KINDS = {"Role": "roles", "ClusterRole": "clusterroles"}
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")


def _atoms(rule: Rule, user: UserInfo, namespace: str) -> list[Attributes]:
    """The single permissions a rule grants, as requests its holder could make."""
    if rule.non_resource_urls:
        return [Attributes(user, verb, False, path=url) for verb in rule.verbs for url in rule.non_resource_urls]
    out = []
    for verb in rule.verbs:
        for group in rule.api_groups:
            for resource in rule.resources:
                res, _, sub = resource.partition("/")
                for name in rule.resource_names or {""}:
                    out.append(Attributes(user, verb, True, group, "", res, sub, namespace, name))
    return out


def _describe(a: Attributes) -> str:
    if not a.resource_request:
        return f'{{NonResourceURLs:["{a.path}"], Verbs:["{a.verb}"]}}'
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    names = f', ResourceNames:["{a.name}"]' if a.name else ""
    return f'{{APIGroups:["{a.api_group}"], Resources:["{res}"]{names}, Verbs:["{a.verb}"]}}'


def missing_rules(held: list[Rule], wanted: tuple[Rule, ...], user: UserInfo, namespace: str) -> list[str]:
    """Every single permission in `wanted` that no rule in `held` covers (`*` only covered by `*`)."""
    return [_describe(a) for rule in wanted for a in _atoms(rule, user, namespace)
            if not any(h.allows(a) for h in held)]


class RBACEscalation:
    """Validating admission: no one grants what they do not hold (see the module docstring)."""

    name = "RBACEscalation"

    def __init__(self, authorizer: Authorizer, rbac: RBACAuthorizer) -> None:
        self.authorizer, self.rbac = authorizer, rbac

    def handles(self, req: AdmissionRequest) -> bool:
        return req.info.group == api.GROUP and (req.info.kind in ROLE_KINDS or req.info.kind in BINDING_KINDS)

    def admit(self, req: AdmissionRequest) -> None:
        user = auth.REQUEST_USER.get()
        if user is None or user.is_master:
            return
        meta = req.obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "") if req.info.namespaced else ""
        if req.info.kind in ROLE_KINDS:
            verb, resource, role_name = "escalate", ROLE_KINDS[req.info.kind], meta.get("name", "")
            wanted = rules_of(req.obj)
        else:
            ref = req.obj.get("roleRef") or {}
            verb, resource, role_name = "bind", ROLE_KINDS.get(ref.get("kind", ""), "roles"), ref.get("name", "")
            wanted = self._role_rules(ref, namespace)
        # asked in the object's own namespace: a RoleBinding may bind a ClusterRole there if `bind` is granted there
        may = Attributes(user, verb, True, api.GROUP, api.VERSION, resource, "", namespace, role_name)
        if (self.authorizer.authorize(may) or Decision(False)).allowed:
            return
        lacking = missing_rules(self.rbac.rules_for(user, namespace), wanted, user, namespace)
        if lacking:
            what = f'{req.info.plural}.{api.GROUP} "{meta.get("name", "")}"'
            raise Forbidden(f'{what} is forbidden: user "{user.name}" (groups={list(user.groups)}) is attempting '
                            f"to grant RBAC permissions not currently held: " + "; ".join(lacking[:20])
                            + (f" (and {len(lacking) - 20} more)" if len(lacking) > 20 else ""))

    def _role_rules(self, ref: Obj, namespace: str) -> tuple[Rule, ...]:
        with self.rbac.lock:
            if ref.get("kind") == "ClusterRole":
                return self.rbac.index.cluster_roles.get(ref.get("name", ""), ())
            return self.rbac.index.roles.get((namespace, ref.get("name", "")), ())
