"""DaemonSet strategy: apps/v1 makes `spec.selector` immutable (the pods a DaemonSet owns must not change
under it); the defaults live in the model (`minik8s.api.daemonsets`)."""

from __future__ import annotations

from minik8s.api.strategy import Obj, Strategy
from minik8s.api.validation import Causes


class DaemonSetStrategy(Strategy):
    def validate_update(self, new: Obj, old: Obj) -> Causes:
        old_sel = (old.get("spec") or {}).get("selector")
        new_sel = (new.get("spec") or {}).get("selector")
        if old_sel != new_sel:
            return [("spec.selector", f"Invalid value: {new_sel}: field is immutable")]
        return []
