"""Namespaces: born Active; deleting one deletes what it holds; the system namespaces stay.

Objects with finalizers are only marked deleting; the namespace then stays Terminating (deletionTimestamp
set, new objects refused) until the last of them is gone, as Kubernetes' namespace controller does.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from minik8s.api.strategy import Obj, Strategy
from minik8s.api.timefmt import now_iso
from minik8s.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from minik8s.api.kinds import KindInfo

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class NamespaceStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        obj["status"] = {"phase": "Active"}

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Status is the server's (kept by the generic update)."""

    def delete(self, info: KindInfo, current: Obj, grace: int | None) -> Obj:
        name = current["metadata"]["name"]
        if name in SYSTEM_NAMESPACES:
            raise BadRequest(f'namespace "{name}" is a system namespace and cannot be deleted')
        held = False
        for kind in self.server.namespaced_kinds():
            for item in self.server.list_all(kind.kind, name):
                try:
                    if item["metadata"].get("finalizers"):
                        self.server.delete_now(kind, item)  # marked deleting; it holds the namespace
                        held = True
                    else:
                        self.server.store.delete(kind.key(name, item["metadata"]["name"]))
                except NotFound:
                    continue
        if held:
            return self._terminating(info, current)
        return self.server.delete_now(info, current)

    def _terminating(self, info: KindInfo, current: Obj) -> Obj:
        """Mark the namespace deleting (phase Terminating); `finalize` removes it once it is empty."""
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            return current
        new = copy.deepcopy(current)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {"phase": "Terminating"}
        try:
            return self.server.store.update(info.key(None, meta["name"]), new, int(meta["resourceVersion"]))
        except Conflict:
            return self._terminating(info, self.server.get(info, None, meta["name"]))

    def finalize(self, info: KindInfo, obj: Obj) -> Obj:
        """A terminating namespace goes only once nothing is left in it."""
        name = obj["metadata"]["name"]
        if any(self.server.list_all(kind.kind, name) for kind in self.server.namespaced_kinds()):
            return obj
        return self.server.delete_now(info, obj)
