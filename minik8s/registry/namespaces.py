"""Namespaces: born Active; deleting one deletes what it holds; the system namespaces stay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minik8s.api.strategy import Obj, Strategy
from minik8s.errors import BadRequest, NotFound

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
        for kind in self.server.namespaced_kinds():
            for item in self.server.list_all(kind.kind, name):
                try:
                    self.server.store.delete(kind.key(name, item["metadata"]["name"]))
                except NotFound:
                    continue
        return self.server.delete_now(info, current)
