"""ConfigMaps and Secrets: what `immutable` and a Secret's `type` forbid on update (the rules live in
`minik8s.api.config`; Secret defaults and stringData folding happen when the object is decoded)."""

from __future__ import annotations

from minik8s.api.config import validate_configmap_update, validate_secret_update
from minik8s.api.strategy import Obj, Strategy
from minik8s.api.validation import Causes


class ConfigMapStrategy(Strategy):
    def validate_update(self, new: Obj, old: Obj) -> Causes:
        return validate_configmap_update(old, new)


class SecretStrategy(Strategy):
    def validate_update(self, new: Obj, old: Obj) -> Causes:
        return validate_secret_update(old, new)
