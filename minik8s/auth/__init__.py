"""Who is asking, and may they: authentication, authorization and the identities of the cluster.

- :mod:`.user`: `UserInfo` and the well-known users and groups (Kubernetes' names);
- :mod:`.authn`: authenticators turn a bearer token into a `UserInfo` (a chain, first answer wins);
- :mod:`.authz`: `Attributes` of a request (Kubernetes' RequestInfo) and authorizers deciding on them.

The API server authenticates every request in its outermost middleware and puts the `UserInfo` in the
ASGI scope (`user_of(request)` reads it back). Today that is the one admin token (user `admin`, in
`system:masters`) or anonymous; `TokenAuthenticator`, `request_attributes` and the authorizers are
the base the RBAC, ServiceAccount and node-identity work builds on, not yet wired in.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from minik8s.auth.user import ANONYMOUS_USER, UserInfo

SCOPE_KEY = "minik8s.user"  # where the authentication middleware leaves the request's UserInfo
#: The request's user for code below the handlers (admission runs in a worker thread, which gets a copy
#: of the request's context): None outside a request, e.g. the API server's own bootstrap writes.
REQUEST_USER: ContextVar[UserInfo | None] = ContextVar("minik8s_request_user", default=None)


def user_of(scope_or_request: Any) -> UserInfo:
    """The authenticated user of an ASGI scope or a Starlette Request/WebSocket (anonymous if none)."""
    scope: MutableMapping[str, Any] = getattr(scope_or_request, "scope", scope_or_request)
    user = scope.get(SCOPE_KEY)
    return user if isinstance(user, UserInfo) else ANONYMOUS_USER
