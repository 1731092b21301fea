"""Client-side apply, as `kubectl apply` does it: the manifest is remembered in the object's
`kubectl.kubernetes.io/last-applied-configuration` annotation, and an update is one strategic merge
patch that sets everything the new manifest says and deletes what the previous manifest said but the
new one no longer does. Fields other writers set (a Service's clusterIP, a controller's annotation,
a list element someone else added) are left alone, and objects applied by kubectl and by
`minik8s apply` share the annotation, so either tool can take over from the other.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from minik8s.api import mergekeys

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
SET_ELEMENT_ORDER = "$setElementOrder/"


def with_last_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` carrying itself (without that annotation) in the annotation, as kubectl writes it."""
    body = copy.deepcopy(manifest)
    annotations = dict((body.get("metadata") or {}).get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    meta = body.setdefault("metadata", {})
    meta["annotations"] = annotations
    if not annotations:
        del meta["annotations"]
    recorded = json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n"
    meta["annotations"] = {**annotations, LAST_APPLIED: recorded}
    return body


def last_applied(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest last applied to `obj`, if it was applied (and the annotation parses)."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def three_way_patch(kind: str, previous: dict[str, Any] | None, manifest: dict[str, Any]) -> dict[str, Any]:
    """The strategic merge patch that makes an object of `kind` say what `manifest` says, removing
    what `previous` (the last applied manifest) said and `manifest` no longer does."""
    return _map_patch(kind, "", previous or {}, manifest)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _map_patch(kind: str, path: str, previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in new.items():
        field = _join(path, key)
        old = previous.get(key)
        if isinstance(value, dict):
            out[key] = _map_patch(kind, field, old if isinstance(old, dict) else {}, value)
        elif isinstance(value, list):
            out.update(_list_patch(kind, field, key, old if isinstance(old, list) else [], value))
        else:
            out[key] = value
    for key in previous:
        if key not in new:
            out[key] = None
    return out


def _list_patch(kind: str, field: str, key: str, previous: list[Any], new: list[Any]) -> dict[str, Any]:
    strategy = mergekeys.strategy(kind, field)
    if strategy is None:  # atomic: the manifest's list replaces the object's
        return {key: new}
    if strategy.key is None:  # a merged set of primitives
        out: dict[str, Any] = {key: new, SET_ELEMENT_ORDER + key: new}
        gone = [v for v in previous if v not in new]
        if gone:
            out[DELETE_FROM_PRIMITIVE_LIST + key] = gone
        return out
    merge_key = strategy.key
    before = {e.get(merge_key): e for e in previous if isinstance(e, dict)}
    kept = {e.get(merge_key) for e in new if isinstance(e, dict)}
    items: list[Any] = [
        _map_patch(kind, field, before.get(e.get(merge_key)) or {}, e) if isinstance(e, dict) else e for e in new]
    items += [{"$patch": "delete", merge_key: k} for k in before if k not in kept]
    return {key: items, SET_ELEMENT_ORDER + key: [{merge_key: e.get(merge_key)} for e in new if isinstance(e, dict)]}
