"""Discovery documents (/api, /apis, /api/v1, /apis/{group}/{version}, /version) from the kinds table."""

from __future__ import annotations

from typing import Any

from minik8s.api import kinds as k
from minik8s.apiserver.reviews import REVIEW_RESOURCES
from minik8s.apiserver.reviews import VERSION as REVIEW_VERSION
from minik8s.metrics.types import GROUP as METRICS_GROUP
from minik8s.metrics.types import GROUP_VERSION as METRICS_GROUP_VERSION
from minik8s.metrics.types import VERSION as METRICS_VERSION
from minik8s.version import KUBE_VERSION

SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": KUBE_VERSION, "gitCommit": "", "gitTreeState":
                  "clean", "buildDate": "2026-11-26T00:00:00Z", "goVersion": "python", "compiler": "cpython",
                  "platform": "linux/amd64"}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def group_versions() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for info in k.KINDS:
        versions = groups.setdefault(info.group, [])
        if info.version not in versions:
            versions.append(info.version)
    return groups


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": group_versions().get("", []),
            "serverAddressByClientCIDRs": []}


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    for group in dict.fromkeys(g for g, *_ in REVIEW_RESOURCES):  # create-only reviews, never stored
        gv = {"groupVersion": f"{group}/{REVIEW_VERSION}", "version": REVIEW_VERSION}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    metrics = [{"groupVersion": METRICS_GROUP_VERSION, "version": METRICS_VERSION}]  # served from memory
    groups.append({"name": METRICS_GROUP, "versions": metrics, "preferredVersion": metrics[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _review_groups() -> set[str]:
    return {g for g, *_ in REVIEW_RESOURCES}


def api_group(group: str) -> dict[str, Any] | None:
    versions = [METRICS_VERSION] if group == METRICS_GROUP else group_versions().get(group)
    if group in _review_groups():
        versions = [REVIEW_VERSION]
    if not group or not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    infos = [i for i in k.KINDS if i.group == group and i.version == version]
    reviews = [{"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                "verbs": ["create"]}
               for g, plural, kind, namespaced in REVIEW_RESOURCES if g == group and version == REVIEW_VERSION]
    if not infos and not reviews:
        return None
    resources: list[dict[str, Any]] = list(reviews)
    for info in infos:
        resources.append({"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                          "kind": info.kind, "verbs": VERBS, "shortNames": list(info.short_names)})
        for sub in info.subresources:
            verbs = {"status": ["get", "patch", "update"], "log": ["get"], "exec": ["create", "get"],
                     "binding": ["create"], "scale": ["get", "patch", "update"], "portforward": ["create", "get"],
                     "token": ["create"], "eviction": ["create"]}[sub]
            sub_kind = {"log": "Pod", "exec": "PodExecOptions", "binding": "Binding", "scale": "Scale",
                        "portforward": "PodPortForwardOptions", "token": "TokenRequest", "eviction": "Eviction"}.get(
                sub, info.kind)
            entry = {"name": f"{info.plural}/{sub}", "singularName": "", "namespaced": info.namespaced,
                     "kind": sub_kind, "verbs": verbs}
            if sub == "token":  # a kind of another group, named as kube-apiserver's discovery does
                entry.update({"group": "authentication.k8s.io", "version": "v1"})
            if sub == "eviction":  # kubectl drain evicts only when discovery names the Eviction's group/version
                entry.update(group="policy", version="v1")
            resources.append(entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_root() -> dict[str, Any]:
    """The OpenAPI v3 index kubectl reads to learn that the server validates fields itself."""
    paths = {}
    for group, versions in group_versions().items():
        for version in versions:
            gv = _gv_path(group, version)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}"}
    return {"paths": paths}


def openapi_v3_group_version(group: str, version: str) -> dict[str, Any] | None:
    """A minimal document: one PATCH operation per kind, tagged with its GVK and `fieldValidation`.

    That is what kubectl's query-param verifier looks for; with it, kubectl sends
    `fieldValidation=Strict` and relies on the server, which rejects unknown fields anyway.
    """
    infos = [i for i in k.KINDS if i.group == group and i.version == version]
    if not infos:
        return None
    paths: dict[str, Any] = {}
    for info in infos:
        item = info.url("{namespace}" if info.namespaced else None, "{name}")
        gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]
        op = {"operationId": f"patch{info.kind}", "x-kubernetes-group-version-kind": gvk, "parameters": params,
              "responses": {"200": {"description": "OK"}}}
        paths[item] = {"patch": op, "put": {**op, "operationId": f"replace{info.kind}"}}
    return {"openapi": "3.0.0", "info": {"title": "minik8s", "version": version}, "paths": paths}
