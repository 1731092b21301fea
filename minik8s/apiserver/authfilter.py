"""The API server's outermost layer: who is asking (authentication, then impersonation) and may they
(authorization), on every HTTP request and every WebSocket/SPDY upgrade, before any handler runs.

The order is kube-apiserver's filter chain: authenticate the bearer token (401 if nobody), apply
`Impersonate-*` headers once the real user may `impersonate` each of them, then authorize the
request's attributes (403 with kube-apiserver's wording). The user that results is left in the ASGI
scope for handlers (`minik8s.auth.user_of`): the self reviews, admission and the audit log read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import WebSocket
from fastapi.responses import Response

from minik8s import auth, jsonc
from minik8s.apiserver import portforward
from minik8s.auth.authz import Attributes, Authorizer, Decision, request_attributes
from minik8s.auth.user import (
    ANONYMOUS,
    AUTHENTICATED,
    SERVICE_ACCOUNT_PREFIX,
    SERVICE_ACCOUNTS,
    UNAUTHENTICATED,
    UserInfo,
    node_name_of,
)
from minik8s.errors import BadRequest, Forbidden, MiniK8sError

log = logging.getLogger("minik8s.apiserver.auth")

IMPERSONATE_USER = b"impersonate-user"
IMPERSONATE_GROUP = b"impersonate-group"
IMPERSONATE_UID = b"impersonate-uid"
IMPERSONATE_EXTRA = b"impersonate-extra-"
#: Subresources reached by an upgrade (GET over WebSocket): kube-apiserver 1.31+ asks for `create`
#: on them, as for the POST that starts the same session, so `get pods/exec` alone opens no shell.
CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")

Authenticate = Callable[[str, str], "MiniK8sError | UserInfo"]


def forbidden(attrs: Attributes, reason: str = "") -> Forbidden:
    """kube-apiserver's 403: the message names user, verb, resource, group and namespace."""
    message = attrs.describe() + (f": {reason}" if reason else "")
    details: dict[str, Any] = {}
    if attrs.resource_request:
        details = {key: value for key, value in (("name", attrs.name), ("group", attrs.api_group),
                                                 ("kind", attrs.resource)) if value}
    return Forbidden(message, details)


def _headers(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return list(scope.get("headers") or [])


def impersonated(real: UserInfo, headers: list[tuple[bytes, bytes]], authorizer: Authorizer) -> UserInfo:
    """The user the request acts as: `real`, or the one `Impersonate-*` names once `real` may
    `impersonate` that user (or ServiceAccount), each group, the uid and each extra value."""
    name = ""
    groups: list[str] = []
    uid = ""
    extra: dict[str, list[str]] = {}
    for key, raw in headers:
        value = raw.decode("latin-1")
        if key == IMPERSONATE_USER:
            name = value
        elif key == IMPERSONATE_GROUP:
            groups.append(value)
        elif key == IMPERSONATE_UID:
            uid = value
        elif key.startswith(IMPERSONATE_EXTRA):
            extra.setdefault(key[len(IMPERSONATE_EXTRA):].decode("latin-1"), []).append(value)
    if not name:
        if groups or uid or extra:
            raise BadRequest("Impersonate-Group, Impersonate-Uid and Impersonate-Extra-* need Impersonate-User")
        return real
    checks: list[Attributes] = []
    implied: list[str] = []  # a ServiceAccount's groups come with it, unchecked (as in Kubernetes)
    if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
        ns, sa = name[len(SERVICE_ACCOUNT_PREFIX):].split(":", 1)
        checks.append(Attributes(real, "impersonate", True, "", "v1", "serviceaccounts", "", ns, sa))
        implied = [SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{ns}"]
    else:
        checks.append(Attributes(real, "impersonate", True, "", "v1", "users", "", "", name))
    checks += [Attributes(real, "impersonate", True, "", "v1", "groups", "", "", g) for g in groups]
    if uid:
        checks.append(Attributes(real, "impersonate", True, "authentication.k8s.io", "v1", "uids", "", "", uid))
    checks += [Attributes(real, "impersonate", True, "authentication.k8s.io", "v1", "userextras", key, "", v)
               for key, values in extra.items() for v in values]
    for attrs in checks:
        decision = authorizer.authorize(attrs) or Decision(False)
        if not decision.allowed:
            raise forbidden(attrs, decision.reason)
    final = [*implied, *groups, UNAUTHENTICATED if name == ANONYMOUS else AUTHENTICATED]
    return UserInfo(name, tuple(dict.fromkeys(final)), uid, extra)


def attributes_of(scope: dict[str, Any], user: UserInfo) -> Attributes:
    method = scope.get("method", "GET")
    query = scope.get("query_string", b"").decode("latin-1")
    attrs = request_attributes(user, method, scope["path"], query)
    if scope["type"] == "websocket" and attrs.subresource in CONNECT_SUBRESOURCES:
        attrs = Attributes(user, "create", True, attrs.api_group, attrs.api_version, attrs.resource,
                           attrs.subresource, attrs.namespace, attrs.name, attrs.path)
    return attrs


class AuthFilter:
    """Plain ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and a queue per request)."""

    def __init__(self, app: Any, authenticate: Authenticate, authorizer: Authorizer,
                 certificate: Callable[[dict[str, Any]], UserInfo | None] | None = None) -> None:
        self.app, self.authenticate, self.authorizer = app, authenticate, authorizer
        self.certificate = certificate  # a verified client certificate's user, asked before the bearer token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):  # exec/attach upgrades carry the token too
            if self._node_request(scope):  # the Node authorizer reads objects (etcd): off the event loop
                outcome = await anyio.to_thread.run_sync(self.check, scope)
            else:
                outcome = self.check(scope)
            if isinstance(outcome, MiniK8sError):
                if scope["type"] == "websocket":  # refused before the upgrade, with the same Status
                    await portforward.deny(WebSocket(scope, receive, send), outcome)
                    return
                response = Response(jsonc.dumps(outcome.to_status()), status_code=outcome.code,
                                    media_type="application/json")
                await response(scope, receive, send)
                return
            scope[auth.SCOPE_KEY] = outcome  # handlers read it with minik8s.auth.user_of
            token = auth.REQUEST_USER.set(outcome)
            try:
                await self.app(scope, receive, send)
            finally:
                auth.REQUEST_USER.reset(token)
            return
        await self.app(scope, receive, send)

    def _node_request(self, scope: dict[str, Any]) -> bool:
        user = self.certificate(scope) if self.certificate is not None else None
        return user is not None and node_name_of(user) is not None

    def check(self, scope: dict[str, Any]) -> MiniK8sError | UserInfo:
        headers = _headers(scope)
        header = next((v.decode("latin-1") for k, v in headers if k == b"authorization"), "")
        cert_user = self.certificate(scope) if self.certificate is not None else None
        user = cert_user or self.authenticate(scope["path"], header)
        if isinstance(user, MiniK8sError):
            return user
        try:
            user = impersonated(user, headers, self.authorizer)
        except MiniK8sError as exc:
            return exc
        attrs = attributes_of(scope, user)
        decision = self.authorizer.authorize(attrs) or Decision(False)
        if decision.allowed:
            return user
        log.info("forbidden", extra={"user": user.name, "verb": attrs.verb, "resource": attrs.resource,
                                     "subresource": attrs.subresource, "namespace": attrs.namespace,
                                     "path": attrs.path})
        return forbidden(attrs, decision.reason)
