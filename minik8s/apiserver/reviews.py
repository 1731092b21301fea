"""Access reviews: the API's answer to "may I?" and "who am I?", never stored.

- authorization.k8s.io/v1 SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview and
  LocalSubjectAccessReview (an admin asking about someone else), SelfSubjectRulesReview
  (`kubectl auth can-i --list`);
- authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`).

Each is a create-only resource: the handler reads the spec, asks the API server's own authorizer,
and returns the object with its status filled, as kube-apiserver does. Whether the caller may create
the review at all was decided by the auth filter (system:basic-user grants the self reviews).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from minik8s import auth, jsonc
from minik8s.apiserver import protobuf
from minik8s.auth.authz import Attributes, Authorizer, Decision
from minik8s.auth.rbac import RBACAuthorizer
from minik8s.auth.user import AUTHENTICATED, UserInfo
from minik8s.errors import BadRequest, Invalid, MiniK8sError

Obj = dict[str, Any]
AUTHZ_GROUP, AUTHN_GROUP, VERSION = "authorization.k8s.io", "authentication.k8s.io", "v1"
#: (group, plural, kind, namespaced): served here, listed by discovery, create only.
REVIEW_RESOURCES = (
    (AUTHZ_GROUP, "selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
    (AUTHZ_GROUP, "subjectaccessreviews", "SubjectAccessReview", False),
    (AUTHZ_GROUP, "localsubjectaccessreviews", "LocalSubjectAccessReview", True),
    (AUTHZ_GROUP, "selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
    (AUTHN_GROUP, "selfsubjectreviews", "SelfSubjectReview", False),
)


def _json(obj: Any, status: int = 201) -> Response:
    return Response(jsonc.dumps(obj), status_code=status, media_type="application/json")


def _spec(body: Any, kind: str) -> Obj:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("kind") not in (None, kind):
        raise BadRequest(f'the body is a {body.get("kind")}, but this URL serves {kind}')
    spec = body.get("spec") if body.get("spec") is not None else {}
    if not isinstance(spec, dict):
        raise Invalid(kind, "", [("spec", "Invalid value: must be an object")], AUTHZ_GROUP)
    return spec


def attributes_from_spec(user: UserInfo, spec: Obj, kind: str, namespace: str | None = None) -> Attributes:
    """The Attributes a (Self|Local)SubjectAccessReview's spec asks about."""
    res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if bool(res) == bool(non):
        raise Invalid(kind, "", [("spec.resourceAttributes",
                                  "Invalid value: exactly one of resourceAttributes or nonResourceAttributes "
                                  "must be specified")], AUTHZ_GROUP)
    if non:
        if not isinstance(non, dict):
            raise Invalid(kind, "", [("spec.nonResourceAttributes", "Invalid value: must be an object")], AUTHZ_GROUP)
        return Attributes(user, str(non.get("verb") or ""), False, path=str(non.get("path") or ""))
    if not isinstance(res, dict):
        raise Invalid(kind, "", [("spec.resourceAttributes", "Invalid value: must be an object")], AUTHZ_GROUP)
    ns = str(res.get("namespace") or "")
    if namespace is not None:
        if ns and ns != namespace:
            raise Invalid(kind, "", [("spec.resourceAttributes.namespace",
                                      f'Invalid value: "{ns}": must match the request namespace "{namespace}"')],
                          AUTHZ_GROUP)
        ns = namespace
    return Attributes(user, str(res.get("verb") or ""), True, str(res.get("group") or ""),
                      str(res.get("version") or ""), str(res.get("resource") or ""),
                      str(res.get("subresource") or ""), ns, str(res.get("name") or ""))


def _subject(spec: Obj, kind: str) -> UserInfo:
    name = spec.get("user")
    groups = spec.get("groups") or []
    if not name and not groups:
        raise Invalid(kind, "", [("spec.user", "Invalid value: at least one of user or group must be specified")],
                      AUTHZ_GROUP)
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise Invalid(kind, "", [("spec.groups", "Invalid value: must be a list of strings")], AUTHZ_GROUP)
    return UserInfo(str(name or ""), tuple(groups), str(spec.get("uid") or ""), dict(spec.get("extra") or {}))


class Reviews:
    """The review handlers over one authorizer (the API server's union) and its RBAC part (rules review)."""

    def __init__(self, authorizer: Authorizer, rbac: RBACAuthorizer | None) -> None:
        self.authorizer, self.rbac = authorizer, rbac

    def _decide(self, body: Obj, attrs: Attributes) -> Obj:
        decision = self.authorizer.authorize(attrs) or Decision(False)
        status: Obj = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        return {**body, "apiVersion": f"{AUTHZ_GROUP}/{VERSION}", "metadata": body.get("metadata") or {},
                "status": status}

    def self_access(self, user: UserInfo, body: Obj) -> Obj:
        kind = "SelfSubjectAccessReview"
        spec = _spec(body, kind)
        return {**self._decide(body, attributes_from_spec(user, spec, kind)), "kind": kind}

    def access(self, body: Obj, namespace: str | None = None) -> Obj:
        kind = "LocalSubjectAccessReview" if namespace is not None else "SubjectAccessReview"
        spec = _spec(body, kind)
        return {**self._decide(body, attributes_from_spec(_subject(spec, kind), spec, kind, namespace)),
                "kind": kind}

    def self_rules(self, user: UserInfo, body: Obj) -> Obj:
        kind = "SelfSubjectRulesReview"
        spec = _spec(body, kind)
        namespace = str(spec.get("namespace") or "")
        rules = self.rbac.rules_for(user, namespace) if self.rbac else []
        resource_rules = [r.to_dict() for r in rules if not r.non_resource_urls]
        non_resource = [r.to_dict() for r in rules if r.non_resource_urls]
        status = {"resourceRules": resource_rules, "nonResourceRules": non_resource,
                  "incomplete": user.is_master}  # system:masters may do more than any rule says
        return {**body, "kind": kind, "apiVersion": f"{AUTHZ_GROUP}/{VERSION}",
                "metadata": body.get("metadata") or {}, "status": status}

    @staticmethod
    def self_subject(user: UserInfo) -> Obj:
        info = user.to_dict()
        if AUTHENTICATED not in info["groups"] and user.name != "system:anonymous":
            info["groups"].append(AUTHENTICATED)
        return {"kind": "SelfSubjectReview", "apiVersion": f"{AUTHN_GROUP}/{VERSION}",
                "metadata": {"creationTimestamp": None}, "status": {"userInfo": info}}


def register(app: FastAPI, reviews: Reviews) -> None:
    """Add the routes; call before the catch-all group routes so these win."""

    def handler(fn: Callable[[Request, UserInfo, Obj], Obj]) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            try:
                raw = await request.body()
                media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                try:  # kubectl's typed client sends reviews as protobuf only
                    body = protobuf.decode(raw) if media == protobuf.MEDIA_TYPE else jsonc.loads(raw) if raw else {}
                except jsonc.JSONDecodeError as exc:
                    raise BadRequest(f"the request body is not valid JSON: {exc}") from None
                return _json(fn(request, auth.user_of(request), body))
            except MiniK8sError as exc:
                return _json(exc.to_status(), exc.code)
        return serve

    base = f"/apis/{AUTHZ_GROUP}/{VERSION}"
    routes = (
        (f"{base}/selfsubjectaccessreviews", lambda _r, u, b: reviews.self_access(u, b)),
        (f"{base}/subjectaccessreviews", lambda _r, _u, b: reviews.access(b)),
        (f"{base}/namespaces/{{namespace}}/localsubjectaccessreviews",
         lambda r, _u, b: reviews.access(b, r.path_params["namespace"])),
        (f"{base}/selfsubjectrulesreviews", lambda _r, u, b: reviews.self_rules(u, b)),
        (f"/apis/{AUTHN_GROUP}/{VERSION}/selfsubjectreviews", lambda _r, u, _b: reviews.self_subject(u)),
    )
    for path, fn in routes:
        app.router.add_route(path, handler(fn), methods=["POST"], include_in_schema=False)
