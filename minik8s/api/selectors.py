"""Label selectors (`a=b,c!=d,e in (f,g),!h,i`) and field selectors (`spec.nodeName=x`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from minik8s.errors import BadRequest

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_OP_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.values[0]
        if self.op == "!=":
            return labels.get(self.key) != self.values[0]
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string; BadRequest names the bad term."""
    if not text or not text.strip():
        return []
    reqs: list[Requirement] = []
    for term in _split_top(text):
        m = _OP_RE.match(term)
        if m:
            op = "=" if m.group(2) in ("=", "==") else "!="
            reqs.append(Requirement(m.group(1), op, (m.group(3),)))
            continue
        m = _SET_RE.match(term)
        if m:
            neg, key, setop, values = m.groups()
            if setop:
                if neg:
                    raise BadRequest(f'invalid label selector term "{term.strip()}"')
                vals = tuple(v.strip() for v in values.split(",") if v.strip())
                reqs.append(Requirement(key, setop, vals))
            else:
                reqs.append(Requirement(key, "!" if neg else "exists"))
            continue
        raise BadRequest(f'invalid label selector term "{term.strip()}"')
    return reqs


def selector_from_match(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """A LabelSelector object (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[expr["operator"]]
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def _field(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


FieldValue = Callable[[Mapping[str, Any]], str]


def _path(path: str, default: str = "") -> FieldValue:
    return lambda obj: _field(obj, path) or default


def _fields(*paths: str) -> dict[str, FieldValue]:
    return {p: _path(p) for p in paths}


#: The field labels kube-apiserver accepts in a fieldSelector, per kind (its `*ToSelectableFields`),
#: besides metadata.name and metadata.namespace, which every kind has.
FIELD_LABELS: dict[str, dict[str, FieldValue]] = {
    "Pod": {**_fields("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
            "spec.hostNetwork": _path("spec.hostNetwork", "false")},
    "Event": {**_fields(*(f"involvedObject.{f}" for f in ("kind", "namespace", "name", "uid", "apiVersion",
                                                          "resourceVersion", "fieldPath")),
                        "reason", "reportingComponent", "type"),
              "source": _path("source.component")},
    "Secret": _fields("type"),
    "Node": {"spec.unschedulable": _path("spec.unschedulable", "false")},
    "Namespace": _fields("status.phase"),
    "ReplicaSet": {"status.replicas": _path("status.replicas", "0")},
    "ReplicationController": {"status.replicas": _path("status.replicas", "0")},
    "Job": {"status.successful": _path("status.successful", "0")},
    "Service": _fields("spec.clusterIP", "spec.type"),
}
_COMMON_FIELDS = _fields("metadata.name", "metadata.namespace")
_FIELD_TERM_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)(.*)$", re.S)


def _split_escaped(text: str) -> list[str]:
    """Split on commas not escaped with a backslash (field selector values may hold `\\,`)."""
    parts, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(text: str | None, kind: str | None = None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over the wire object for `a.b=c,d!=e`. With `kind`, only the field labels Kubernetes
    supports for that kind are accepted (BadRequest `field label not supported: X` otherwise); without,
    any dotted path into the object."""
    if not text or not text.strip():
        return lambda _obj: True
    labels = {**_COMMON_FIELDS, **FIELD_LABELS.get(kind or "", {})}
    terms: list[tuple[FieldValue, bool, str]] = []
    for term in _split_escaped(text):
        m = _FIELD_TERM_RE.match(term)
        if not m:
            raise BadRequest(f'invalid field selector: "{term.strip()}": expected field=value, field==value '
                             "or field!=value")
        label = m.group(1)
        if kind is not None and label not in labels:
            raise BadRequest(f"field label not supported: {label}")
        terms.append((labels.get(label) or _path(label), m.group(2) != "!=", _unescape(m.group(3).strip())))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((value_of(obj) == value) == eq for value_of, eq, value in terms)

    return match
