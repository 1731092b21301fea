"""Jobs: the selector and pod labels generated from the uid, and a template that cannot change."""

from __future__ import annotations

from minik8s.api import batch
from minik8s.api.strategy import Obj, Strategy
from minik8s.api.validation import Causes


class JobStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        batch.job_defaults(obj)

    def validate_update(self, new: Obj, old: Obj) -> Causes:
        return batch.validate_job_update(old, new)
