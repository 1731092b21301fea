"""Reading manifests: files, directories, stdin; several YAML documents per file."""

from __future__ import annotations

import datetime
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from minik8s.api import kinds as k
from minik8s.errors import MiniK8sError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A manifest problem, already phrased for the user (file, document, what is wrong)."""


@dataclass
class Document:
    source: str
    index: int
    body: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source}: document {self.index}"

    @property
    def info(self) -> k.KindInfo:
        return k.by_kind(self.body.get("apiVersion"), self.body.get("kind"))


def _files(path: str) -> list[tuple[str, str]]:
    if path == "-":
        return [("<stdin>", sys.stdin.read())]
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in MANIFEST_SUFFIXES and f.is_file())
        return [(str(f), f.read_text()) for f in files]
    if not p.exists():
        raise ManifestError(f'the path "{path}" does not exist')
    return [(str(p), p.read_text())]


def load(paths: tuple[str, ...]) -> list[Document]:
    """Every document of every file, checked for shape: a mapping with apiVersion, kind and a known kind."""
    docs: list[Document] = []
    for path in paths:
        for source, text in _files(path):
            try:
                raw = list(yaml.safe_load_all(text))
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ManifestError(f"{source}: invalid YAML{where}: {problem}") from None
            for i, body in enumerate(raw, start=1):
                if body is None:
                    continue
                doc = Document(source, i, _as_json(body, "", set(), f"{source}: document {i}"))
                _check_shape(doc)
                if doc.body["kind"].endswith("List") and isinstance(doc.body.get("items"), list):
                    for j, item in enumerate(doc.body["items"]):
                        member = Document(source, i, item)
                        _check_shape(member, f"items[{j}]: ")
                        docs.append(_checked_kind(member))
                    continue
                docs.append(_checked_kind(doc))
    if not docs:
        raise ManifestError(f"no objects passed to apply (read {', '.join(paths)})")
    return docs


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_shape(doc: Document, prefix: str = "") -> None:
    """What a server would refuse before it could name the kind: caught here, said once, per document."""
    body = doc.body
    if not isinstance(body, dict):
        raise ManifestError(f"{doc.where}: {prefix}expected a mapping with apiVersion and kind, "
                            f"not {_type_name(body)}")
    for field in ("apiVersion", "kind"):
        if not body.get(field):
            raise ManifestError(f"{doc.where}: {prefix}missing required field \"{field}\"")
        if not isinstance(body[field], str):
            raise ManifestError(f"{doc.where}: {prefix}{field}: must be a string, not {_type_name(body[field])}")
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ManifestError(f"{doc.where}: {prefix}metadata: must be a mapping, not {_type_name(meta)}")
    for field in ("name", "generateName", "namespace"):
        value = (meta or {}).get(field)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{doc.where}: {prefix}metadata.{field}: must be a string, not {_type_name(value)}")


def _checked_kind(doc: Document) -> Document:
    try:
        doc.info  # noqa: B018 - raises for kinds we do not serve
    except MiniK8sError as exc:
        raise ManifestError(f"{doc.where}: {exc.message}") from None
    meta = doc.body.get("metadata") or {}
    if not meta.get("name") and not meta.get("generateName"):
        raise ManifestError(f"{doc.where}: missing required field \"metadata.name\"")
    return doc


def _as_json(value: Any, path: str, ancestors: set[int], where: str) -> Any:
    """YAML's values as the JSON kubectl would send: timestamps become strings; what JSON cannot say
    (NaN, Infinity, a mapping that contains itself through an alias, binary) is an error naming its path."""
    here = path or "<document>"
    if isinstance(value, dict | list):
        if id(value) in ancestors:
            raise ManifestError(f"{where}: {here}: a YAML alias refers to a mapping or list that contains it")
        inner = ancestors | {id(value)}
        if isinstance(value, list):
            return [_as_json(v, f"{path}[{i}]", inner, where) for i, v in enumerate(value)]
        out = {}
        for key, v in value.items():
            if not isinstance(key, str | int | float | bool):
                raise ManifestError(f"{where}: {here}: keys must be strings, not {_type_name(key)}")
            name = key if isinstance(key, str) else str(key).lower() if isinstance(key, bool) else str(key)
            out[name] = _as_json(v, f"{path}.{name}" if path else name, inner, where)
        return out
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(f"{where}: {here}: {value} is not a number JSON can carry")
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat().replace("+00:00", "Z")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ManifestError(f"{where}: {here}: a YAML {type(value).__name__} has no JSON form")
