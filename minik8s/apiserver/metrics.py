"""metrics.k8s.io/v1beta1 on the API server: PodMetrics and NodeMetrics served from memory, and the
kubelets' report endpoint. Registered before the generic `/apis/{group}/{version}/...` routes."""

from __future__ import annotations

import inspect
import json
from typing import Any

from fastapi import FastAPI, Request, Response

from minik8s.errors import BadRequest, MethodNotAllowed, MiniK8sError
from minik8s.metrics.store import MetricsStore
from minik8s.metrics.types import GROUP, GROUP_VERSION, REPORT_PATH, VERSION

PREFIX = f"/apis/{GROUP}/{VERSION}"
RESOURCES = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]


def resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": RESOURCES}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status, media_type="application/json")


def _list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def register(app: FastAPI, store: MetricsStore) -> None:
    """Add the routes; call before the catch-all group routes so these win."""

    def guard(fn: Any) -> Any:
        async def handler(request: Request, **kw: Any) -> Response:
            try:
                return await fn(request, **kw)
            except MiniK8sError as exc:
                return _json(exc.to_status(), exc.code)
        handler.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        return handler

    async def report(request: Request, node: str) -> Response:
        if request.method != "PUT":
            raise MethodNotAllowed("metrics reports are PUT")
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None
        store.report(node, body)
        return _json({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})

    async def nodes(request: Request) -> Response:
        return _json(_list("NodeMetrics", store.list_nodes(request.query_params.get("labelSelector"))))

    async def node(request: Request, name: str) -> Response:
        return _json(store.get_node(name))

    async def all_pods(request: Request) -> Response:
        return _json(_list("PodMetrics", store.list_pods(None, request.query_params.get("labelSelector"))))

    async def pods(request: Request, namespace: str) -> Response:
        return _json(_list("PodMetrics", store.list_pods(namespace, request.query_params.get("labelSelector"))))

    async def pod(request: Request, namespace: str, name: str) -> Response:
        return _json(store.get_pod(namespace, name))

    async def discovery(request: Request) -> Response:
        return _json(resource_list())

    for path, fn, methods in ((REPORT_PATH, report, ["PUT"]), (PREFIX, discovery, ["GET"]),
                              (f"{PREFIX}/nodes", nodes, ["GET"]), (f"{PREFIX}/nodes/{{name}}", node, ["GET"]),
                              (f"{PREFIX}/pods", all_pods, ["GET"]),
                              (f"{PREFIX}/namespaces/{{namespace}}/pods", pods, ["GET"]),
                              (f"{PREFIX}/namespaces/{{namespace}}/pods/{{name}}", pod, ["GET"])):
        app.api_route(path, methods=methods)(guard(fn))
