"""Resource logic behind the REST routes: validate, default, admit, store, and the subresources.

Generic on purpose: it never names a kind. What a kind does beyond being stored (defaults, update
rules, allocation, delete behaviour) is its strategy's (`minik8s.api.strategy`, `minik8s.registry`),
and the admission chain (`minik8s.apiserver.admission`) sees every create and update.
Synchronous: the HTTP layer runs it in worker threads, tests call it directly.
"""

from __future__ import annotations

import copy
import logging
import secrets
import uuid
from typing import Any

from pydantic import ValidationError

from minik8s import auth, jsonc
from minik8s.api import kinds as k
from minik8s.api.selectors import labels_match, parse_field_selector, parse_label_selector
from minik8s.api.strategy import NetworkConfig, Strategy
from minik8s.api.timefmt import now_iso
from minik8s.api.validation import Causes, int_range_causes, pydantic_causes
from minik8s.apiserver.admission import AdmissionChain, AdmissionRequest, DefaultTolerationSeconds, default_chain
from minik8s.apiserver.envelope import check_envelope
from minik8s.apiserver.limits import check_object_size
from minik8s.apiserver.patch import MERGE_PATCH, apply_patch, merge_patch, patch_media_type
from minik8s.apiserver.priority import PriorityAdmission, ensure_system_priority_classes
from minik8s.errors import AlreadyExists, BadRequest, Conflict, Invalid, NotFound, details
from minik8s.registry.namespaces import SYSTEM_NAMESPACES
from minik8s.store import EtcdStore

log = logging.getLogger("minik8s.apiserver")

Obj = dict[str, Any]
GENERATE_SUFFIX_LEN = 5
NAMESPACE_GUARD_TRIES = 3  # creates racing changes to their namespace: re-read it this many times
MAX_REMEMBERED_NAMESPACES = 10000
PATCH_CONFLICT_TRIES = 5  # a PATCH racing other writers is re-applied on the fresh object this often
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
__all__ = ["Resources", "key_for", "merge_patch", "now_iso"]


def finalizer_causes(new: Obj, old: Obj) -> Causes:
    """Once deletion has begun, finalizers may only be removed (Kubernetes' ValidateObjectMetaUpdate)."""
    if not old["metadata"].get("deletionTimestamp"):
        return []
    added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
    if added:
        return [("metadata.finalizers", f"Forbidden: no new finalizers can be added if the object is being "
                                        f"deleted, found new finalizers {sorted(added)}")]
    return []


def finalized(obj: Obj) -> bool:
    """Marked deleting (grace over) with no finalizer left to wait for."""
    meta = obj["metadata"]
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers") \
        and meta.get("deletionGracePeriodSeconds") in (0, None)


def key_for(info: k.KindInfo, namespace: str | None, name: str | None = None) -> str:
    return info.key(namespace, name)


class Resources:
    """CRUD for every kind in the kinds table, over one EtcdStore."""

    def __init__(self, store: EtcdStore, pod_cidr: str = NetworkConfig.pod_cidr,
                 node_cidr_prefix: int = NetworkConfig.node_cidr_prefix,
                 service_cidr: str = NetworkConfig.service_cidr, admission: AdmissionChain | None = None,
                 default_tolerations: DefaultTolerationSeconds | None = None) -> None:
        self.store = store
        self.network = NetworkConfig(pod_cidr, node_cidr_prefix, service_cidr)
        self.admission = admission if admission is not None \
            else default_chain(self.find_service_account, self.namespace_labels, default_tolerations)
        self.admission.mutating.append(PriorityAdmission(lambda: self.list_all("PriorityClass")))
        self._live_namespaces: dict[str, int] = {}  # name -> the revision seen live (not terminating)
        self._strategies: dict[str, Strategy] = {info.kind: info.strategy(self) for info in k.KINDS}

    # --- what strategies may use (minik8s.api.strategy.ServerView) -----------------------------
    def strategy(self, info: k.KindInfo) -> Strategy:
        return self._strategies[info.kind]

    def list_all(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.list(key_for(k.lookup(kind), namespace))[0]

    def find_service_account(self, namespace: str, name: str) -> Obj | None:
        """For admission (automountServiceAccountToken); None when the account does not exist."""
        try:
            return self.store.get(key_for(k.lookup("ServiceAccount"), namespace, name))
        except NotFound:
            return None
    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels, read fresh (admission decides by them); None when it does not exist."""
        try:
            ns = self.store.get(key_for(k.lookup("Namespace"), None, name))
        except NotFound:
            return None
        return dict((ns.get("metadata") or {}).get("labels") or {})

    def namespaced_kinds(self) -> list[k.KindInfo]:
        return [info for info in k.KINDS if info.namespaced]

    # --- nodes ----------------------------------------------------------------------------
    def join_node(self, request: Obj) -> Obj:
        """Register (or re-register) a joining node: its name, labels, taints and wished pod CIDR."""
        if not isinstance(request, dict) or not request.get("name"):
            raise BadRequest("a join request needs the node's name")
        name = str(request["name"])
        info = k.lookup("Node")
        try:
            return self.get(info, None, name)
        except NotFound:
            pass
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(request.get("labels") or {})}},
                "spec": {key: v for key, v in (("taints", request.get("taints")), ("podCIDR", request.get("podCIDR")))
                         if v}}
        return self.create(info, None, body)

    # --- helpers --------------------------------------------------------------------------
    def _validate(self, info: k.KindInfo, obj: Obj) -> Obj:
        """Shape (unknown fields, types) then meaning; returns the model's wire form."""
        raw_meta = obj.get("metadata")
        meta: Obj = raw_meta if isinstance(raw_meta, dict) else {}
        name = str(meta.get("name") or meta.get("generateName") or "")
        try:
            model = info.model.model_validate(obj)
        except ValidationError as exc:
            raise Invalid(info.kind, name, pydantic_causes(exc), info.group) from None
        wire = model.to_dict()
        causes = int_range_causes(wire) or info.validate(model)
        if causes:
            raise Invalid(info.kind, name, causes, info.group)
        return wire

    def _admit(self, req: AdmissionRequest) -> Obj:
        """The admission chain around the kind's own validation: mutate, re-validate if changed, validate."""
        if req.user_info is None:
            req.user_info = auth.REQUEST_USER.get()
            req.user = req.user or (req.user_info.name if req.user_info else None)
        if self.admission.mutate(req):
            req.obj = self._validate(req.info, req.obj)
        self.admission.validate(req)
        return req.obj

    def _namespace_guard(self, info: k.KindInfo, namespace: str | None, fresh: bool = False) -> tuple[str, int] | None:
        """(key, revision) of the live namespace a new object goes into, for the create's transaction to
        check; the revision is remembered, so a create needs no read of its namespace while it is unchanged.
        NotFound when the namespace does not exist, Conflict while it is being terminated."""
        if not (info.namespaced and namespace):
            return None
        key = key_for(k.lookup("Namespace"), None, namespace)
        rev = None if fresh else self._live_namespaces.get(namespace)
        if rev is None:
            self._live_namespaces.pop(namespace, None)
            try:
                ns = self.store.get(key)
            except NotFound:
                raise NotFound(f'namespaces "{namespace}" not found', details(namespace, "namespaces")) from None
            if (ns.get("metadata") or {}).get("deletionTimestamp"):
                raise Conflict(f'namespace "{namespace}" is being terminated') from None
            rev = int(ns["metadata"]["resourceVersion"])
            if len(self._live_namespaces) >= MAX_REMEMBERED_NAMESPACES:
                self._live_namespaces.clear()
            self._live_namespaces[namespace] = rev
        return key, rev

    def _store_create(self, info: k.KindInfo, obj: Obj, guard: tuple[str, int] | None) -> Obj:
        """Write a new object, in the same etcd transaction as the check that its namespace is unchanged."""
        meta = obj["metadata"]
        namespace = meta.get("namespace")
        key = key_for(info, namespace, meta["name"])
        for _ in range(NAMESPACE_GUARD_TRIES):
            try:
                created = self.store.create(key, obj, guard)
                break
            except Conflict:  # the namespace changed since we looked (labels, deletion): look again
                guard = self._namespace_guard(info, namespace, fresh=True)
        else:
            created = self.store.create(key, obj, guard)
        self.strategy(info).after_create(key, created)
        return created

    @staticmethod
    def _not_found(info: k.KindInfo, name: str) -> NotFound:
        return NotFound(f'{info.plural} "{name}" not found', details(name, info.plural, info.group))

    # --- reads ----------------------------------------------------------------------------
    def get(self, info: k.KindInfo, namespace: str | None, name: str) -> Obj:
        try:
            return self.store.get(key_for(info, namespace, name))
        except NotFound:
            raise self._not_found(info, name) from None

    def list(self, info: k.KindInfo, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[Obj], int]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items, revision = self.store.list(key_for(info, namespace))
        items = [o for o in items if labels_match(labels, o["metadata"].get("labels")) and fields(o)]
        return items, revision

    # --- writes ---------------------------------------------------------------------------
    def create(self, info: k.KindInfo, namespace: str | None, body: Obj, dry_run: bool = False) -> Obj:
        # only the top level and metadata change before validation makes a new object
        body = check_envelope(info, body)
        meta = dict(body.get("metadata") or {})
        body["metadata"] = meta
        if info.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise BadRequest(f'the namespace of the object ({meta["namespace"]}) does not match the '
                                 f'namespace of the request ({namespace})')
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(_SUFFIX_ALPHABET) for _ in range(GENERATE_SUFFIX_LEN))
        obj = self._validate(info, body)
        guard = self._namespace_guard(info, obj["metadata"].get("namespace"))
        meta = obj["metadata"]
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        strategy = self.strategy(info)
        strategy.prepare_for_create(obj)
        obj = self._admit(AdmissionRequest("CREATE", info, obj, dry_run=dry_run))
        check_object_size(info.kind, meta["name"], obj)
        try:
            with strategy.write_guard(obj, None):
                if dry_run:
                    return obj
                return self._store_create(info, obj, guard)
        except AlreadyExists:
            raise AlreadyExists(f'{info.plural} "{meta["name"]}" already exists',
                                details(meta["name"], info.plural, info.group)) from None

    def update(self, info: k.KindInfo, namespace: str | None, name: str, body: Obj,
               subresource: str | None = None, dry_run: bool = False) -> Obj:
        """PUT: replace spec/metadata (or only status for the status subresource)."""
        body = check_envelope(info, body)
        current = self.get(info, namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise BadRequest(f'the name of the object ({meta.get("name")}) does not match the name in the URL ({name})')
        rv = meta.get("resourceVersion")
        if rv and str(rv) != current["metadata"]["resourceVersion"]:
            raise self._conflict(info, name)
        if subresource == "status":
            new = {**current, "status": body.get("status")}
        else:
            new = copy.deepcopy(body)
            new["metadata"] = {**meta, "name": name}
            if info.has_status:
                new["status"] = current.get("status")
        return self._write(info, current, new, expected=int(rv) if rv else None, dry_run=dry_run,
                           subresource=subresource)

    def patch(self, info: k.KindInfo, namespace: str | None, name: str, patch: Any,
              subresource: str | None = None, content_type: str = MERGE_PATCH, dry_run: bool = False) -> Obj:
        """PATCH: `patch` is the request body (bytes) or, for callers in this process, a merge patch object.
        Without a resourceVersion precondition in the result, a write that races another is retried on
        the fresh object, as kube-apiserver does."""
        body = patch if isinstance(patch, bytes) else jsonc.dumps(patch)
        patch_media_type(content_type)
        for attempt in range(PATCH_CONFLICT_TRIES):
            current = self.get(info, namespace, name)
            new = check_envelope(info, apply_patch(current, body, content_type, info.kind))
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and str(rv) != current["metadata"]["resourceVersion"]:
                raise self._conflict(info, name)
            if subresource == "status":
                new = {**current, "status": new.get("status")}
            elif info.has_status:
                new["status"] = current.get("status")
            try:
                return self._write(info, current, new, int(current["metadata"]["resourceVersion"]), dry_run,
                                   subresource)
            except Conflict:
                if attempt == PATCH_CONFLICT_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _conflict(self, info: k.KindInfo, name: str) -> Conflict:
        return Conflict(f'Operation cannot be fulfilled on {info.plural} "{name}": the object has been modified; '
                        "please apply your changes to the latest version and try again",
                        details(name, info.plural, info.group))

    def _write(self, info: k.KindInfo, current: Obj, new: Obj, expected: int | None, dry_run: bool = False,
               subresource: str | None = None) -> Obj:
        cur_meta = current["metadata"]
        new_meta = new.setdefault("metadata", {})
        if not isinstance(new_meta, dict):
            raise Invalid(info.kind, cur_meta["name"], [("metadata", "Invalid value: must be an object")])
        for fixed in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation"):
            if fixed in cur_meta:
                new_meta[fixed] = cur_meta[fixed]
            else:
                new_meta.pop(fixed, None)
        new_meta["name"] = cur_meta["name"]
        if new.get("status") is None:
            new.pop("status", None)
        obj = self._validate(info, new)
        strategy = self.strategy(info)
        causes = finalizer_causes(obj, current) or strategy.validate_update(obj, current)
        if causes:
            raise Invalid(info.kind, cur_meta["name"], causes)
        if obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] = int(cur_meta.get("generation") or 1) + 1
        strategy.prepare_for_update(obj, current)
        obj = self._admit(AdmissionRequest("UPDATE", info, obj, current, subresource, dry_run))
        check_object_size(info.kind, cur_meta["name"], obj)
        key = key_for(info, cur_meta.get("namespace"), cur_meta["name"])
        if {**obj, "metadata": {**obj["metadata"], "resourceVersion": cur_meta["resourceVersion"]}} == current \
                and not self.store.stale(key):  # unless stored under a rotated-out key: rewriting re-encrypts
            return current  # a no-op update writes nothing and keeps the resourceVersion, as in Kubernetes
        try:
            with strategy.write_guard(obj, current):
                if dry_run:
                    return obj
                strategy.after_write(key)
                written = self.store.update(key, obj, expected or int(cur_meta["resourceVersion"]))
        except Conflict:
            raise self._conflict(info, cur_meta["name"]) from None
        except NotFound:
            raise self._not_found(info, cur_meta["name"]) from None
        if cur_meta.get("finalizers") and finalized(written):
            return strategy.finalize(info, written)
        return written

    def delete(self, info: k.KindInfo, namespace: str | None, name: str,
               grace_period_seconds: int | None = None) -> Obj:
        return self.strategy(info).delete(info, self.get(info, namespace, name), grace_period_seconds)

    def delete_now(self, info: k.KindInfo, current: Obj) -> Obj:
        """Delete the object, or, while it has finalizers, only mark it deleting (deletionTimestamp set,
        grace 0): it goes when the last finalizer is removed (see `_write`), as in Kubernetes."""
        meta = current["metadata"]
        key = key_for(info, meta.get("namespace"), meta["name"])
        if meta.get("finalizers"):
            return self._mark_deleting(info, key, current)
        self.strategy(info).after_write(key)
        try:
            deleted = self.store.delete(key)
        except NotFound:
            raise self._not_found(info, meta["name"]) from None
        if info.namespaced and meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 0:
            self._finish_namespace(meta.get("namespace"))  # it was held by finalizers: it may have held its namespace
        return deleted

    def _mark_deleting(self, info: k.KindInfo, key: str, current: Obj) -> Obj:
        """Set deletionTimestamp (kept if a graceful delete set it) and a zero grace period; idempotent."""
        meta = current["metadata"]
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") in (0, None):
            return current
        new = copy.deepcopy(current)
        new["metadata"]["deletionTimestamp"] = meta.get("deletionTimestamp") or now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        self.strategy(info).after_write(key)
        try:
            return self.store.update(key, new, int(meta["resourceVersion"]))
        except Conflict:  # changed meanwhile: mark the fresh object
            return self.delete_now(info, self.get(info, meta.get("namespace"), meta["name"]))

    def _finish_namespace(self, namespace: str | None) -> None:
        """A terminating namespace goes when the last object that held it (by its finalizers) is gone."""
        if not namespace:
            return
        ns_info = k.lookup("Namespace")
        try:
            ns = self.get(ns_info, None, namespace)
        except NotFound:
            return
        if ns["metadata"].get("deletionTimestamp"):
            self.strategy(ns_info).finalize(ns_info, ns)

    def ensure_system_namespaces(self) -> None:
        info = k.lookup("Namespace")
        for ns in SYSTEM_NAMESPACES:
            try:
                self.create(info, None, {"metadata": {"name": ns}})
                log.info("created namespace", extra={"namespace": ns})
            except AlreadyExists:
                continue
        ensure_system_priority_classes(lambda info, body: self.create(info, None, body))
