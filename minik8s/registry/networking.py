"""Ingress and IngressClass (networking.k8s.io/v1): what happens on their writes beyond validation.

- A new Ingress without a class gets the default IngressClass (Kubernetes' DefaultIngressClass
  admission plug-in), and starts with an empty status (the gateway controller writes it).
- An IngressClass's `spec.controller` is immutable, as in Kubernetes.
"""

from __future__ import annotations

from minik8s.api.networking import default_ingress_class
from minik8s.api.strategy import Obj, Strategy
from minik8s.api.validation import Causes


class IngressStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        obj.pop("status", None)
        default_ingress_class(obj, lambda: self.server.list_all("IngressClass"))

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """The class is defaulted once, at creation (as Kubernetes does)."""


class IngressClassStrategy(Strategy):
    def validate_update(self, new: Obj, old: Obj) -> Causes:
        before = (old.get("spec") or {}).get("controller")
        after = (new.get("spec") or {}).get("controller")
        if after != before:
            return [("spec.controller", f'Invalid value: "{after}": field is immutable')]
        return []
