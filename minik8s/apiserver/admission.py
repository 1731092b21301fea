"""The admission chain: ordered plug-ins that see every create and update before it is stored.

As in kube-apiserver, mutating plug-ins run first (each may change the object: defaults that depend
on other objects, injected sidecars), then the object is validated again if any of them changed it,
then validating plug-ins run (each may only refuse, with Forbidden or Invalid). A plug-in that does
not care about a request returns at once; `handles` keeps the chain cheap for the kinds it ignores.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from minik8s.apiserver.tokenvolume import add_token_volume, wants_token

if TYPE_CHECKING:
    from minik8s.api.kinds import KindInfo
    from minik8s.auth.user import UserInfo

log = logging.getLogger("minik8s.apiserver.admission")

Obj = dict[str, Any]
Operation = Literal["CREATE", "UPDATE"]


@dataclass
class AdmissionRequest:
    """One write as the chain sees it. `obj` is the object about to be stored (plug-ins may change it
    in the mutating phase); `old` is the stored object on UPDATE."""

    operation: Operation
    info: KindInfo
    obj: Obj
    old: Obj | None = None
    subresource: str | None = None
    dry_run: bool = False
    user: str | None = None  # the authenticated user, once requests carry one
    user_info: UserInfo | None = None  # who asks (minik8s.auth.REQUEST_USER when the API server calls)

    @property
    def namespace(self) -> str | None:
        return (self.obj.get("metadata") or {}).get("namespace")


class AdmissionPlugin(Protocol):
    name: str

    def handles(self, req: AdmissionRequest) -> bool: ...

    def admit(self, req: AdmissionRequest) -> None:
        """Mutating plug-ins change `req.obj`; validating ones raise Forbidden or Invalid."""


@dataclass
class AdmissionChain:
    mutating: list[AdmissionPlugin] = field(default_factory=list)
    validating: list[AdmissionPlugin] = field(default_factory=list)

    def mutate(self, req: AdmissionRequest) -> bool:
        """Run the mutating plug-ins in order; True when any of them changed the object."""
        plugins = [p for p in self.mutating if p.handles(req)]
        if not plugins:
            return False
        before = copy.deepcopy(req.obj)
        for plugin in plugins:
            plugin.admit(req)
        return req.obj != before

    def validate(self, req: AdmissionRequest) -> None:
        for plugin in self.validating:
            if plugin.handles(req):
                plugin.admit(req)

    def names(self) -> list[str]:
        return [p.name for p in self.mutating] + [p.name for p in self.validating]


#: (namespace, name) -> the stored ServiceAccount, or None when there is none
FindServiceAccount = Callable[[str, str], "Obj | None"]


class ServiceAccountDefault:
    """Kubernetes' ServiceAccount admission, mutating half: a pod names its ServiceAccount, `default`
    unless it says otherwise, and gets the projected token volume (`kube-api-access-…`) mounted in every
    container unless the pod or its ServiceAccount sets automountServiceAccountToken: false.

    A pod naming an account that does not exist (yet) is admitted, unlike Kubernetes: namespaces get
    their `default` account from a controller a moment after they appear, and the kubelet cannot get
    the pod a token until the account exists (the pod waits in ContainerCreating until then)."""

    name = "ServiceAccount"

    def __init__(self, find_account: FindServiceAccount | None = None) -> None:
        self.find_account = find_account

    def handles(self, req: AdmissionRequest) -> bool:
        return req.info.kind == "Pod" and req.operation == "CREATE" and req.subresource is None

    def admit(self, req: AdmissionRequest) -> None:
        spec = req.obj.get("spec")
        if not isinstance(spec, dict):
            return
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = "default"
            spec["serviceAccount"] = "default"  # the deprecated alias, kept equal as the API server does
        if self.find_account is None:
            return
        account = self.find_account(req.namespace or "default", spec["serviceAccountName"])
        if wants_token(req.obj, account):
            add_token_volume(req.obj)


#: kube-apiserver's --default-not-ready-toleration-seconds / --default-unreachable-toleration-seconds
DEFAULT_TOLERATION_SECONDS = 300
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


class DefaultTolerationSeconds:
    """Kubernetes' DefaultTolerationSeconds admission: a new pod that does not already tolerate the
    not-ready / unreachable NoExecute taints gets tolerations of them for a bounded time, so the taint
    eviction controller moves it off a failed node after that long (the cluster's --pod-eviction-timeout)."""

    name = "DefaultTolerationSeconds"

    def __init__(self, not_ready_s: int = DEFAULT_TOLERATION_SECONDS,
                 unreachable_s: int = DEFAULT_TOLERATION_SECONDS) -> None:
        self.seconds = {NOT_READY_TAINT: not_ready_s, UNREACHABLE_TAINT: unreachable_s}

    def handles(self, req: AdmissionRequest) -> bool:
        return req.info.kind == "Pod" and req.operation == "CREATE" and req.subresource is None

    def admit(self, req: AdmissionRequest) -> None:
        spec = req.obj.get("spec")
        if not isinstance(spec, dict):
            return
        tolerations = list(spec.get("tolerations") or [])
        for key, seconds in self.seconds.items():
            if not any(_tolerates_no_execute(tol, key) for tol in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": seconds})
        spec["tolerations"] = tolerations


def _tolerates_no_execute(tol: Obj, key: str) -> bool:
    """Whether a toleration (wire form) matches the value-less NoExecute taint `key`."""
    if tol.get("effect") not in (None, "", "NoExecute"):
        return False
    if tol.get("operator") == "Exists":
        return not tol.get("key") or tol.get("key") == key
    return tol.get("key") == key and not tol.get("value")


def default_chain(find_account: FindServiceAccount | None = None,
                  namespace_labels: Callable[[str], dict[str, str] | None] | None = None,
                  default_tolerations: DefaultTolerationSeconds | None = None) -> AdmissionChain:
    """The plug-ins every API server runs, in order. `namespace_labels` reads a namespace's labels, for
    the plug-ins that decide by them (Pod Security); without it they are left out (unit tests)."""
    from minik8s.auth.node import NodeRestriction

    validating: list[AdmissionPlugin] = [NodeRestriction()]
    if namespace_labels is not None:
        from minik8s.podsecurity.admission import PodSecurity  # it imports this module's types

        validating.append(PodSecurity(namespace_labels))
    mutating: list[AdmissionPlugin] = [ServiceAccountDefault(find_account),
                                       default_tolerations or DefaultTolerationSeconds()]
    return AdmissionChain(mutating=mutating, validating=validating)
