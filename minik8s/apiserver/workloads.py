"""Workload-specific server logic: the `scale` subresource and deletion propagation (Orphan/Background/Foreground).

Kept beside `resources.py` so the generic CRUD stays generic:
- `/scale` reads and writes `spec.replicas` of a ReplicaSet, Deployment or ReplicationController as an
  autoscaling/v1 Scale;
- DELETE with `propagationPolicy=Orphan` strips the owner's ownerReference from its dependents first;
  `Background` (the default) deletes the owner and leaves the dependents to the garbage collector
  (`minik8s.controllers.gc`); `Foreground` deletes the dependents (recursively) before the owner.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from pydantic import ValidationError

from minik8s.api import apps
from minik8s.api import kinds as k
from minik8s.api.validation import pydantic_causes
from minik8s.apiserver.resources import Resources, key_for, merge_patch, now_iso
from minik8s.errors import BadRequest, Conflict, Invalid, MethodNotAllowed, NotFound, details

log = logging.getLogger("minik8s.apiserver")

Obj = dict[str, Any]
POLICIES = ("Orphan", "Background", "Foreground")
SCALE_API_VERSION = "autoscaling/v1"
MAX_CONFLICT_RETRIES = 5


# --- scale ---------------------------------------------------------------------------------------

def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    spec_selector = (obj.get("spec") or {}).get("selector")
    if obj.get("kind") == "ReplicationController":  # an equality-only map, not a LabelSelector
        spec_selector = {"matchLabels": spec_selector}
    selector = apps.selector_string(spec_selector)
    return {"kind": "Scale", "apiVersion": SCALE_API_VERSION,
            "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                     "creationTimestamp") if key in meta},
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", apps.DEFAULT_REPLICAS))},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas") or 0),
                       "selector": "" if selector == "<none>" else selector}}


def scale(res: Resources, info: k.KindInfo, namespace: str | None, name: str, method: str, body: Any) -> Obj:
    """GET/PUT/PATCH of `.../{name}/scale`."""
    current = res.get(info, namespace, name)
    if method == "GET":
        return _scale_of(current)
    if method not in ("PUT", "PATCH"):
        raise MethodNotAllowed(f"{method} is not supported on scale")
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    wanted = merge_patch(_scale_of(current), body) if method == "PATCH" else body
    try:
        model = apps.Scale.model_validate(wanted)
    except ValidationError as exc:
        raise Invalid("Scale", name, pydantic_causes(exc), "autoscaling") from None
    causes = apps.validate_scale(model)
    if model.spec.replicas is None:
        causes.append(("spec.replicas", "Required value"))
    if causes:
        raise Invalid("Scale", name, causes, "autoscaling")
    rv = model.metadata.resourceVersion
    if method == "PUT" and rv and rv != current["metadata"]["resourceVersion"]:
        raise Conflict(f'Operation cannot be fulfilled on {info.plural} "{name}": the object has been modified; '
                       "please apply your changes to the latest version and try again",
                       details(name, info.plural, info.group))
    updated = res.patch(info, namespace, name, {"spec": {"replicas": model.spec.replicas}})
    return _scale_of(updated)


# --- deletion propagation --------------------------------------------------------------------------

def policy_of(query: Any, body: Any) -> str | None:
    """The propagation policy from `?propagationPolicy=` or a DeleteOptions body (also `orphanDependents`)."""
    body = body if isinstance(body, dict) else {}
    policy = query.get("propagationPolicy") or body.get("propagationPolicy")
    if policy is None:
        orphan = query.get("orphanDependents", body.get("orphanDependents"))
        if orphan is not None:
            policy = "Orphan" if str(orphan).lower() == "true" else "Background"
    if policy is not None and policy not in POLICIES:
        raise BadRequest(f'propagationPolicy "{policy}" is not supported: supported values: {", ".join(POLICIES)}')
    return policy


def dependents(res: Resources, owner: Obj) -> list[tuple[k.KindInfo, Obj]]:
    """Objects in the owner's namespace that list it (by uid) in their ownerReferences."""
    uid = owner["metadata"].get("uid")
    namespace = owner["metadata"].get("namespace")
    found: list[tuple[k.KindInfo, Obj]] = []
    if not uid or not namespace:
        return found
    for info in k.KINDS:
        if not info.namespaced or info.kind == "Event":
            continue
        items, _ = res.store.list(key_for(info, namespace))
        found.extend((info, o) for o in items
                     if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or []))
    return found


def _mark_deleting(res: Resources, info: k.KindInfo, obj: Obj) -> None:
    """Set deletionTimestamp so controllers stop adopting for this owner while its dependents are released."""
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return
    new = copy.deepcopy(obj)
    new["metadata"]["deletionTimestamp"] = now_iso()
    new["metadata"]["deletionGracePeriodSeconds"] = 0
    try:
        res.store.update(key_for(info, meta.get("namespace"), meta["name"]), new, int(meta["resourceVersion"]))
    except (Conflict, NotFound):
        log.info("could not mark owner as deleting; orphaning anyway", extra={"object": meta["name"]})


def _strip_owner(res: Resources, info: k.KindInfo, obj: Obj, uid: str) -> None:
    meta = obj["metadata"]
    for _ in range(MAX_CONFLICT_RETRIES):
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        new = copy.deepcopy(obj)
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        try:
            res.store.update(key_for(info, meta.get("namespace"), meta["name"]), new,
                             int(obj["metadata"]["resourceVersion"]))
            return
        except Conflict:
            try:
                obj = res.get(info, meta.get("namespace"), meta["name"])
            except NotFound:
                return
        except NotFound:
            return
    raise Conflict(f'could not orphan {info.plural} "{meta["name"]}": it keeps changing')


def delete(res: Resources, info: k.KindInfo, namespace: str | None, name: str, grace: int | None,
           policy: str | None) -> Obj:
    """DELETE honouring the propagation policy; None behaves like Background."""
    if policy not in ("Orphan", "Foreground"):
        return res.delete(info, namespace, name, grace)
    owner = res.get(info, namespace, name)
    uid = owner["metadata"]["uid"]
    if policy == "Orphan":
        _mark_deleting(res, info, owner)
        for dinfo, dep in dependents(res, owner):
            _strip_owner(res, dinfo, dep, uid)
    else:
        # Marked first, so its controller stops making dependents while they are being deleted
        # (pods have none, and their own deletion is graceful: leave them to res.delete).
        if info.kind != "Pod":
            _mark_deleting(res, info, owner)
        _delete_dependents(res, owner, grace)
    try:
        deleted = res.delete(info, namespace, name, grace)
    except NotFound:
        deleted = owner
    if policy == "Foreground":
        # A controller that acted on a cached copy from before the mark may have made one more.
        _delete_dependents(res, owner, grace)
    return deleted


def _delete_dependents(res: Resources, owner: Obj, grace: int | None) -> None:
    uid = owner["metadata"]["uid"]
    for dinfo, dep in dependents(res, owner):
        if not any(r.get("uid") == uid for r in dep["metadata"].get("ownerReferences") or []):
            continue
        try:
            delete(res, dinfo, dep["metadata"].get("namespace"), dep["metadata"]["name"], grace, "Foreground")
        except NotFound:
            continue
