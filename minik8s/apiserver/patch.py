"""PATCH bodies, by Content-Type, as kube-apiserver applies them.

- `application/merge-patch+json`: RFC 7386 JSON merge patch (lists replaced, null deletes a key).
- `application/json-patch+json`: RFC 6902 JSON patch (add/remove/replace/move/copy/test on JSON pointers).
- `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch: like a merge patch, but the
  lists named in :mod:`minik8s.api.mergekeys` are merged element by element (by merge key, or as sets of
  primitives), and the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/`, `$setElementOrder/` directives
  apply. This is what `kubectl apply` (client-side) and `kubectl patch` send by default.
- `application/apply-patch+yaml` (server-side apply) needs field managers, which minik8s does not keep: it is
  refused with 415, which kubectl reports as "Server-side apply not available on the server".
"""

from __future__ import annotations

import copy
from typing import Any

from minik8s import jsonc
from minik8s.api import mergekeys
from minik8s.api.mergekeys import ListStrategy
from minik8s.errors import BadRequest, Unprocessable, UnsupportedMediaType

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_PREFIX = "application/apply-patch+"
SUPPORTED = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

PATCH_DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
SET_ELEMENT_ORDER = "$setElementOrder/"


def patch_media_type(content_type: str) -> str:
    """The patch media type of a Content-Type header; 415 for any we do not apply (checked before the
    object is read: server-side apply of a missing object is refused the same way, not answered 404)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith(APPLY_PATCH_PREFIX):  # +yaml, and +cbor from newer clients
        raise UnsupportedMediaType(
            f"server-side apply ({media}) is not supported by minik8s, which keeps no "
            "field managers: use client-side apply (kubectl apply without --server-side)")
    if media not in SUPPORTED:
        raise UnsupportedMediaType(
            f'the body of the request was in an unknown format ("{media or "no Content-Type"}") - accepted '
            f"media types include: {', '.join(SUPPORTED)}")
    return media


def apply_patch(current: dict[str, Any], body: bytes, content_type: str, kind: str) -> dict[str, Any]:
    """The object `current` (left untouched) becomes once the PATCH `body` of `content_type` is applied."""
    media = patch_media_type(content_type)
    try:
        patch = jsonc.loads(body) if body else None
    except jsonc.JSONDecodeError as exc:
        raise BadRequest(f"the patch is not valid JSON: {exc}") from None
    if media == JSON_PATCH:
        result = json_patch(current, patch)
    elif not isinstance(patch, dict):
        raise BadRequest("a merge patch must be a JSON object")
    elif media == MERGE_PATCH:
        result = merge_patch(current, patch)
    else:
        result = strategic_merge_patch(kind, current, patch)
    if not isinstance(result, dict):
        raise BadRequest("the patched object is not a JSON object")
    return result


# --- RFC 7386 ---------------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 ---------------------------------------------------------------------------------------
def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise Unprocessable(f'invalid JSON pointer "{text}": it must be empty or start with "/"')
    return [t.replace("~1", "/").replace("~0", "~") for t in text.split("/")[1:]]


def _index(token: str, size: int, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise Unprocessable(f'invalid array index "{token}" in {path}')
    i = int(token)
    if i > size or (i == size and not allow_end):
        raise Unprocessable(f"array index {i} out of bounds in {path}")
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for token in tokens[:-1]:
        if isinstance(cur, dict):
            if token not in cur:
                raise Unprocessable(f"doc is missing path: {path}")
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_index(token, len(cur), path, False)]
        else:
            raise Unprocessable(f"doc is missing path: {path}")
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), path, False)]
    raise Unprocessable(f"doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), path, True), value)
    else:
        raise Unprocessable(f"doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise Unprocessable("cannot remove the whole document")
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(last, len(parent), path, False)]
    else:
        raise Unprocessable(f"doc is missing path: {path}")
    return doc


def _op_field(op: dict[str, Any], name: str) -> Any:
    if name not in op:
        raise Unprocessable(f'operation "{op.get("op")}" is missing "{name}"')
    return op[name]


def json_patch(document: Any, ops: Any) -> Any:
    """RFC 6902: every operation in order on a copy of `document`; a failed one (a `test` included)
    fails the whole patch with 422, as kube-apiserver answers."""
    if not isinstance(ops, list):
        raise BadRequest("a JSON patch must be a JSON array of operations")
    doc = copy.deepcopy(document)
    for op in ops:
        if not isinstance(op, dict):
            raise BadRequest("each JSON patch operation must be a JSON object")
        name, path = op.get("op"), _op_field(op, "path")
        if name == "add":
            doc = _add(doc, path, copy.deepcopy(_op_field(op, "value")))
        elif name == "remove":
            doc = _remove(doc, path)
        elif name == "replace":
            _get(doc, path)  # must exist
            doc = _add(_remove(doc, path), path, copy.deepcopy(_op_field(op, "value"))) if _pointer(path) \
                else copy.deepcopy(_op_field(op, "value"))
        elif name in ("move", "copy"):
            source = _op_field(op, "from")
            if name == "move" and (path + "/").startswith(source + "/") and path != source:
                raise Unprocessable(f'cannot move "{source}" into its own child "{path}"')
            value = copy.deepcopy(_get(doc, source))
            if name == "move":
                doc = _remove(doc, source)
            doc = _add(doc, path, value)
        elif name == "test":
            if _get(doc, path) != _op_field(op, "value"):
                raise Unprocessable(f"testing value {path} failed: test failed")
        else:
            raise Unprocessable(f'unexpected JSON patch operation "{name}"')
    return doc


# --- strategic merge patch --------------------------------------------------------------------------
def strategic_merge_patch(kind: str, original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes' strategic merge patch of a `kind` object (merge keys from :mod:`mergekeys`)."""
    return _merge_map(kind, "", original, patch)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _merge_map(kind: str, path: str, original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get(PATCH_DIRECTIVE)
    if directive == "replace":
        return _merge_map(kind, path, {}, {k: v for k, v in patch.items() if k != PATCH_DIRECTIVE})
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise BadRequest(f'unknown patch type: "{directive}" in map at {path or "the root"}')
    result = dict(original)
    retain = patch.get(RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise BadRequest(f"{RETAIN_KEYS} at {path or 'the root'} must be a list of field names")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            field = key[len(DELETE_FROM_PRIMITIVE_LIST):]
            if not isinstance(value, list):
                raise BadRequest(f"{key} at {path or 'the root'} must be a list")
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        field_path = _join(path, key)
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = _merge_map(kind, field_path, current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _merge_list(kind, field_path, current if isinstance(current, list) else [], value)
        else:
            result[key] = value
    for key, order in patch.items():
        if key.startswith(SET_ELEMENT_ORDER):
            field = key[len(SET_ELEMENT_ORDER):]
            if isinstance(result.get(field), list) and isinstance(order, list):
                result[field] = _ordered(result[field], order, mergekeys.strategy(kind, _join(path, field)))
    return result


def _merge_list(kind: str, path: str, original: list[Any], patch: list[Any]) -> list[Any]:
    strategy = mergekeys.strategy(kind, path)
    directives = [e for e in patch if isinstance(e, dict) and PATCH_DIRECTIVE in e]
    if strategy is None:  # atomic: replaced by the patch's list (a directive element means nothing here)
        return [_clean(e) for e in patch if not (isinstance(e, dict) and PATCH_DIRECTIVE in e)]
    if any(e.get(PATCH_DIRECTIVE) == "replace" for e in directives):
        return [_clean(e) for e in patch if not (isinstance(e, dict) and e.get(PATCH_DIRECTIVE) == "replace")]
    if strategy.key is None:  # a set of primitives, merged by value
        result = list(original)
        result.extend(v for i, v in enumerate(patch) if v not in result and v not in patch[:i])
        return result
    key = strategy.key
    result = list(original)
    for element in patch:
        if not isinstance(element, dict) or key not in element:
            raise BadRequest(f'{path}: every element must be a map with the merge key "{key}", got {element!r}')
        directive = element.get(PATCH_DIRECTIVE)
        match = next((i for i, e in enumerate(result) if isinstance(e, dict) and e.get(key) == element[key]), None)
        if directive == "delete":
            result = [e for e in result if not (isinstance(e, dict) and e.get(key) == element[key])]
        elif directive not in (None, "merge"):
            raise BadRequest(f'unknown patch type: "{directive}" in list {path}')
        elif match is None:
            result.append(_merge_map(kind, path, {}, element))
        else:
            result[match] = _merge_map(kind, path, result[match], element)
    return result


def _clean(value: Any) -> Any:
    """A patch value stored as is (an atomic list's element): directives dropped, nulls kept out."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _ordered(items: list[Any], order: list[Any], strategy: ListStrategy | None) -> list[Any]:
    """`items` (the merged list: the server's elements where they were, new ones appended) with those
    named in `order` in that order, and the others (only on the server) interleaved by their position,
    like Kubernetes' normalizeElementOrder."""
    key = strategy.key if strategy else None

    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    positions = {id(item): i for i, item in enumerate(items)}
    listed = sorted((i for i in items if ident(i) in wanted), key=lambda i: wanted.index(ident(i)))
    others = [i for i in items if ident(i) not in wanted]
    result: list[Any] = []
    while listed and others:
        source = listed if positions[id(listed[0])] < positions[id(others[0])] else others
        result.append(source.pop(0))
    return result + listed + others
