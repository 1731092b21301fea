"""RoleBinding and ClusterRoleBinding: what happens on their writes beyond validation.

A binding's roleRef is immutable, as in Kubernetes: granting another role is a new binding, so that
`bind` checks and audit records see the grant as what it is.
"""

from __future__ import annotations

from minik8s.api.rbac import validate_binding_update
from minik8s.api.strategy import Obj, Strategy
from minik8s.api.validation import Causes


class BindingStrategy(Strategy):
    def validate_update(self, new: Obj, old: Obj) -> Causes:
        return validate_binding_update(new, old)
