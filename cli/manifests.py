"""Reading manifests: files, directories, stdin; several YAML documents per file."""

from __future__ import annotations

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
                doc = Document(source, i, body)
                if not isinstance(body, dict):
                    raise ManifestError(f"{doc.where}: expected a mapping with apiVersion and kind")
                for field in ("apiVersion", "kind"):
                    if not body.get(field):
                        raise ManifestError(f"{doc.where}: missing required field \"{field}\"")
                if body.get("kind", "").endswith("List") and isinstance(body.get("items"), list):
                    docs.extend(Document(source, i, item) for item in body["items"])
                    continue
                try:
                    doc.info  # noqa: B018 - raises for kinds we do not serve
                except MiniK8sError as exc:
                    raise ManifestError(f"{doc.where}: {exc.message}") from None
                if not (body.get("metadata") or {}).get("name") and not (body.get("metadata") or {}).get(
                        "generateName"):
                    raise ManifestError(f"{doc.where}: missing required field \"metadata.name\"")
                docs.append(doc)
    if not docs:
        raise ManifestError(f"no objects passed to apply (read {', '.join(paths)})")
    return docs
