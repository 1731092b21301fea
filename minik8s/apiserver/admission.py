"""The admission chain: ordered plug-ins that see every create and update before it is stored.

As in kube-apiserver, mutating plug-ins run first (each may change the object: defaults that depend
on other objects, injected sidecars), then the object is validated again if any of them changed it,
then validating plug-ins run (each may only refuse, with Forbidden or Invalid). A plug-in that does
not care about a request returns at once; `handles` keeps the chain cheap for the kinds it ignores.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from minik8s.api.kinds import KindInfo

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


class ServiceAccountDefault:
    """Kubernetes' ServiceAccount admission, mutating half: a pod names its ServiceAccount, `default`
    unless it says otherwise (its token and the account's existence are the security layer's)."""

    name = "ServiceAccount"

    def handles(self, req: AdmissionRequest) -> bool:
        return req.info.kind == "Pod" and req.operation == "CREATE" and req.subresource is None

    def admit(self, req: AdmissionRequest) -> None:
        spec = req.obj.get("spec")
        if isinstance(spec, dict) and not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = "default"


def default_chain() -> AdmissionChain:
    """The plug-ins every API server runs, in order."""
    return AdmissionChain(mutating=[ServiceAccountDefault()], validating=[])
