"""Authorization: what a request asks to do (`Attributes`, Kubernetes' RequestInfo) and who decides.

`request_attributes` reads the verb, API group, resource, subresource, namespace and name from the
method, path and query exactly as kube-apiserver's RequestInfoFactory does, so RBAC rules written
for Kubernetes mean the same here. Anything outside /api and /apis is a non-resource request
(`/healthz`, `/version`), matched by RBAC's `nonResourceURLs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs

from minik8s.auth.user import SYSTEM_MASTERS, UserInfo

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "GET": "get", "HEAD": "get", "DELETE": "delete"}


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    field_selector: str = ""  # list/watch: the fieldSelector asked for (the Node authorizer reads it, as 1.31+)

    def describe(self) -> str:
        """`pods "web" is forbidden: User "x" cannot get resource "pods" in API group "" in the namespace "d"`,
        kube-apiserver's wording, so scripts that read 403s read ours."""
        if not self.resource_request:
            return f'User "{self.user.name}" cannot {self.verb} path "{self.path}"'
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        head = f'{res} "{self.name}" is forbidden: ' if self.name else f"{res} is forbidden: "
        return (f'{head}User "{self.user.name}" cannot {self.verb} resource "{res}" '
                f'in API group "{self.api_group}"{where}')


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> Decision | None:
        """Allowed or denied, with the reason; None for no opinion (Kubernetes' DecisionNoOpinion: the next
        authorizer of the union decides)."""


class AlwaysAllow:
    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(True, "always allow")


class PrivilegedGroups:
    """Members of these groups (`system:masters`) may do anything, whatever RBAC holds: the admin can
    always repair a broken policy (kube-apiserver's privileged-group authorizer)."""

    def __init__(self, groups: tuple[str, ...] = (SYSTEM_MASTERS,)) -> None:
        self.groups = groups

    def authorize(self, attrs: Attributes) -> Decision:
        for group in self.groups:
            if group in attrs.user.groups:
                return Decision(True, f"member of {group}")
        return Decision(False)


class UnionAuthorizer:
    """Asks each authorizer in order; the first that allows wins (`--authorization-mode=Node,RBAC`).
    `authorizers` is a plain list: the Node authorizer goes in front of RBAC with `insert`."""

    def __init__(self, authorizers: list[Authorizer] | None = None) -> None:
        self.authorizers: list[Authorizer] = list(authorizers or [])

    def authorize(self, attrs: Attributes) -> Decision:
        reasons = []
        for authorizer in self.authorizers:
            decision = authorizer.authorize(attrs)
            if decision is None:  # no opinion (the Node authorizer, asked about someone not a node)
                continue
            if decision.allowed:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
        return Decision(False, "; ".join(reasons))


def request_attributes(user: UserInfo, method: str, path: str, query: str = "") -> Attributes:
    """Kubernetes' RequestInfo for one HTTP request (k8s.io/apiserver/pkg/endpoints/request)."""
    parts = [p for p in path.strip("/").split("/") if p]
    verb = _VERBS.get(method.upper(), method.lower())
    if not parts or parts[0] not in ("api", "apis"):
        return Attributes(user, verb, resource_request=False, path=path)
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        group, rest = (parts[1] if len(parts) > 1 else ""), parts[2:]
    if not rest:  # /api, /apis, /apis/<group>: discovery
        return Attributes(user, verb, resource_request=False, path=path)
    version, rest = rest[0], rest[1:]
    if not rest:  # /api/v1, /apis/<group>/<version>: discovery
        return Attributes(user, verb, resource_request=False, path=path)
    params = parse_qs(query)
    if rest[0] == "watch":  # the deprecated /watch/ prefix
        verb, rest = "watch", rest[1:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        if len(rest) == 2 or (len(rest) == 3 and rest[2] in ("status", "finalize")):
            # /namespaces/<ns>[/status]: the namespace object itself
            namespace = rest[1]
        else:
            namespace, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if verb != "watch" and not name:
        if verb == "get":
            verb = "watch" if params.get("watch", [""])[0].lower() in ("true", "1") else "list"
        elif verb == "delete":
            verb = "deletecollection"
    return Attributes(user, verb, True, group, version, resource, subresource, namespace, name, path,
                      params.get("fieldSelector", [""])[0])
