"""The part of a request body every kind shares, checked before anything reads it: an object, with
string `apiVersion`/`kind` and an object `metadata` whose identifying fields are strings. A body
failing here gets a 400/422 naming the field, never a TypeError deeper in (a 500)."""

from __future__ import annotations

from typing import Any

from minik8s.api import kinds as k
from minik8s.errors import BadRequest, Invalid

STRING_META = ("name", "generateName", "namespace", "resourceVersion", "uid")
JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
              float: "a number", type(None): "null"}


def json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def check_envelope(info: k.KindInfo, body: Any) -> dict[str, Any]:
    """`body` (a shallow copy with the URL's apiVersion and kind) if it is an object with well-typed
    top-level fields; else BadRequest/Invalid naming the field."""
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object ({info.kind}), not {json_type(body)}")
    raw_meta = body.get("metadata")
    meta = raw_meta if isinstance(raw_meta, dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    causes = [(field, f"Invalid value: {json_type(body[field])}: must be a string")
              for field in ("apiVersion", "kind") if body.get(field) is not None and not isinstance(body[field], str)]
    if raw_meta is not None and not isinstance(raw_meta, dict):
        causes.append(("metadata", f"Invalid value: {json_type(raw_meta)}: must be an object"))
    causes += [(f"metadata.{field}", f"Invalid value: {json_type(meta[field])}: must be a string")
               for field in STRING_META if meta.get(field) is not None and not isinstance(meta[field], str)]
    rv = meta.get("resourceVersion")
    if isinstance(rv, str) and rv and not (rv.isascii() and rv.isdigit()):
        causes.append(("metadata.resourceVersion", f'Invalid value: "{rv}": must be a resourceVersion this '
                                                   "server returned (a number)"))
    if causes:
        raise Invalid(info.kind, str(name or ""), causes, info.group)
    version, kind = body.get("apiVersion") or info.api_version, body.get("kind") or info.kind
    if (version, kind) != (info.api_version, info.kind):  # every verb: a PUT could store a Service as a pod
        raise BadRequest(f"the body is a {version}/{kind}, but this URL serves {info.api_version}/{info.kind}")
    # left out, empty or null: the URL's, as Kubernetes defaults them (a patch removing them changes nothing)
    return {**body, "apiVersion": version, "kind": kind}
