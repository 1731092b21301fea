"""The cross-object rule of the DNS kind: no two DNS objects claim the same host + path.

Like ClusterIP allocation, it is derived from what is stored: under one lock (held around the
check and the store write, so two concurrent creates cannot both pass), list every DNS object
and compare claims. The error names the object that already holds the route.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from minik8s.api.dns import claims
from minik8s.errors import Invalid

Obj = dict[str, Any]


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def conflicts(obj: Obj, others: list[Obj]) -> list[tuple[str, str]]:
    """(field path, message) for each path of `obj` another stored DNS object already claims."""
    mine = _key(obj)
    held: dict[tuple[str, str], str] = {}
    for other in others:
        if _key(other) != mine:
            for claim in claims(other):
                held.setdefault(claim, _key(other))
    causes = []
    host = str((obj.get("spec") or {}).get("host") or "")
    for i, route in enumerate((obj.get("spec") or {}).get("paths") or []):
        for claim in claims({"spec": {"host": host, "paths": [route]}}):
            if claim in held:
                causes.append((f"spec.paths[{i}].path",
                               f'Duplicate value: "{claim[1]}": host "{claim[0]}" path "{claim[1]}" is already '
                               f'claimed by DNS "{held[claim]}"'))
    return causes


class HostClaims:
    """Checks a DNS object against the stored ones; `list_dns` lists every DNS object (all namespaces)."""

    def __init__(self, list_dns: Callable[[], list[Obj]]) -> None:
        self.list_dns = list_dns
        self.lock = threading.Lock()  # hold around check + store write

    def check(self, obj: Obj) -> None:
        causes = conflicts(obj, self.list_dns())
        if causes:
            raise Invalid("DNS", str((obj.get("metadata") or {}).get("name") or ""), causes)
