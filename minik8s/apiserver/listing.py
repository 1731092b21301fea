"""LIST requests as kube-apiserver answers them: `limit`/`continue` chunks read at one etcd revision,
`remainingItemCount`, `resourceVersion` + `resourceVersionMatch`, label and field selectors.

The continue token is Kubernetes' own shape (base64url of `{"v":"meta.k8s.io/v1","rv":N,"start":KEY}`,
the key relative to the kind's etcd prefix), so every chunk of one list is read at the revision of the
first; once etcd compaction has passed that revision the token is answered with 410 Expired.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minik8s import jsonc
from minik8s.api import kinds as k
from minik8s.api.selectors import labels_match, parse_field_selector, parse_label_selector
from minik8s.apiserver import params
from minik8s.apiserver.resources import key_for
from minik8s.errors import BadRequest, Gone, Invalid, Timeout
from minik8s.store import EtcdStore

CONTINUE_VERSION = "meta.k8s.io/v1"
MAX_CHUNK = 10000  # keys read per etcd range while selectors filter most of them out
EXACT, NOT_OLDER_THAN = "Exact", "NotOlderThan"
EXPIRED_CONTINUE = ("The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter.")
EXPIRED_EXACT = "The resourceVersion for the provided list is too old."
#: the annotation of the BOOKMARK that ends a watch's initial events (metav1.InitialEventsAnnotationKey)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass
class ListOptions:
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    match: str = ""
    label_selector: str | None = None
    field_selector: str | None = None

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> ListOptions:
        limit = params.int_param(q, "limit", 0) or 0
        return cls(limit, q.get("continue") or "", params.resource_version(q),
                   q.get("resourceVersionMatch") or "", q.get("labelSelector"), q.get("fieldSelector"))

    def validate(self) -> None:
        """kube-apiserver's ValidateListOptions (422 on ListOptions) and its continue rules (400)."""
        def invalid(msg: str) -> Invalid:
            return Invalid("ListOptions.meta.k8s.io", "", [("resourceVersionMatch", msg)])

        if self.match:
            if self.match not in (EXACT, NOT_OLDER_THAN):
                raise invalid(f'Unsupported value: "{self.match}": supported values: "{EXACT}", "{NOT_OLDER_THAN}"')
            if not self.resource_version:
                raise invalid("Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")
            if self.continue_token:
                raise invalid("Forbidden: resourceVersionMatch is forbidden when continue is provided")
            if self.match == EXACT and self.resource_version == "0":
                raise invalid('Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        if self.continue_token and self.resource_version not in ("", "0"):
            raise BadRequest("specifying resource version is not allowed when using continue")


def watch_initial_events(q: Mapping[str, str]) -> bool | None:
    """`?sendInitialEvents=` of a watch (the watch-list protocol of client-go 1.32+, kubectl 1.35+), checked as
    kube-apiserver's validateWatchOptions does: None when absent. True asks for the current objects as ADDED
    events, then a BOOKMARK annotated `k8s.io/initial-events-end`, then the changes after them."""
    def invalid(field: str, msg: str) -> Invalid:
        return Invalid("ListOptions.meta.k8s.io", "", [(field, msg)])

    match = q.get("resourceVersionMatch") or ""
    if q.get("sendInitialEvents") is None:
        if match:
            raise invalid("resourceVersionMatch",
                          "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
        return None
    send = params.bool_param(q, "sendInitialEvents")
    if match != NOT_OLDER_THAN:
        raise invalid("resourceVersionMatch",
                      f"Forbidden: sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}")
    if not params.bool_param(q, "allowWatchBookmarks"):
        raise invalid("allowWatchBookmarks",
                      "Forbidden: allowWatchBookmarks must be set to true when sendInitialEvents is set")
    return send


def initial_events_end(info: k.KindInfo, revision: int) -> dict[str, Any]:
    """The BOOKMARK that ends a watch's initial events: only the kind and the revision they were read at."""
    return {"apiVersion": info.api_version, "kind": info.kind,
            "metadata": {"resourceVersion": str(revision), "annotations": {INITIAL_EVENTS_END: "true"}}}


def encode_continue(revision: int, start: str) -> str:
    raw = jsonc.dumps({"v": CONTINUE_VERSION, "rv": revision, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    """(revision, start key relative to the kind's prefix); BadRequest for anything else."""
    try:
        data = jsonc.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("v") != CONTINUE_VERSION:
            raise ValueError("unknown version")
        revision, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, jsonc.JSONDecodeError) as exc:
        raise BadRequest(f"continue key is not valid: {exc}") from None
    if revision <= 0 or start.startswith("/") or ".." in start.split("/"):
        raise BadRequest("continue key is not valid: bad revision or key")
    return revision, start


def list_objects(store: EtcdStore, info: k.KindInfo, namespace: str | None, opts: ListOptions) -> dict[str, Any]:
    """The `{Kind}List` body for one LIST request."""
    opts.validate()
    labels = parse_label_selector(opts.label_selector)
    fields = parse_field_selector(opts.field_selector, info.kind)
    filtered = bool(labels) or bool(opts.field_selector and opts.field_selector.strip())
    root, prefix = key_for(info, None), key_for(info, namespace)
    start, revision = prefix, _read_revision(store, opts)
    if opts.continue_token:
        revision, relative = decode_continue(opts.continue_token)
        start = root + relative
        if not start.startswith(prefix):
            raise BadRequest("continue key is not valid: it belongs to another list")
    items: list[dict[str, Any]] = []
    last_key, more, remaining = "", False, 0
    limit = opts.limit
    while True:
        chunk = min(MAX_CHUNK, max(limit - len(items), 1) * (2 if filtered else 1)) if limit else 0
        try:
            page = store.list_page(prefix, start, chunk, revision)
        except Gone:
            raise Gone(EXPIRED_CONTINUE if opts.continue_token else EXPIRED_EXACT) from None
        revision = page.revision
        for i, (key, obj) in enumerate(page.items):
            if labels_match(labels, obj["metadata"].get("labels")) and fields(obj):
                items.append(obj)
            if limit and len(items) == limit:
                last_key, more = key, i < len(page.items) - 1 or page.more
                remaining = page.count - i - 1
                break
        else:
            if page.more and page.items:
                start = page.items[-1][0] + "\x00"
                continue
        break
    meta: dict[str, Any] = {"resourceVersion": str(revision)}
    if more:
        meta["continue"] = encode_continue(revision, last_key[len(root):] + "\x00")
        if not filtered:
            meta["remainingItemCount"] = remaining
    return {"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": meta, "items": items}


def _read_revision(store: EtcdStore, opts: ListOptions) -> int | None:
    """The etcd revision to read at: None (now) unless an exact read is asked for; 504 for a
    resourceVersion the store has not reached, as kube-apiserver answers after its wait."""
    rv = opts.resource_version
    if rv in ("", "0"):
        return None
    try:
        wanted = int(rv)
    except ValueError:
        raise BadRequest(f'invalid resourceVersion "{rv}": must be a number') from None
    current = store.revision()
    if wanted > current:
        raise Timeout(f"Too large resource version: {wanted}, current: {current}",
                      {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                       "retryAfterSeconds": 1})
    exact = opts.match == EXACT or (not opts.match and opts.limit > 0)  # legacy: rv + limit reads exactly
    return wanted if exact else None
