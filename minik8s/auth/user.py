"""Users and groups as Kubernetes names them (k8s.io/apiserver/pkg/authentication/user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYSTEM_MASTERS = "system:masters"  # the group RBAC never limits: cluster-admin by construction
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
NODES = "system:nodes"
NODE_PREFIX = "system:node:"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS = "system:serviceaccounts"

#: the control-plane components' users, each with its own credential (Kubernetes' names)
SCHEDULER = "system:kube-scheduler"
CONTROLLER_MANAGER = "system:kube-controller-manager"
PROXY = "system:kube-proxy"
DNS = "system:minik8s-dns"
GATEWAY = "system:minik8s-gateway"
NETPOL = "system:minik8s-netpol"  # the NetworkPolicy agent in every kubelet
APISERVER_KUBELET_CLIENT = "system:apiserver-kubelet-client"  # the API server's identity toward kubelets
ADMIN = "admin"  # the admin kubeconfig's user, in system:masters


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_master(self) -> bool:
        return SYSTEM_MASTERS in self.groups

    def to_dict(self) -> dict[str, Any]:
        """The wire form of authentication.k8s.io UserInfo (audit log, SelfSubjectReview)."""
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


def node_user(node: str) -> UserInfo:
    return UserInfo(NODE_PREFIX + node, (NODES, AUTHENTICATED))


def node_name_of(user: UserInfo) -> str | None:
    """The node a `system:node:<name>` user in `system:nodes` speaks for, else None."""
    if NODES in user.groups and user.name.startswith(NODE_PREFIX):
        return user.name[len(NODE_PREFIX):]
    return None


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
                    (SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}", AUTHENTICATED), uid)


ANONYMOUS_USER = UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
