"""The one table of minik8s errors, mapped once to HTTP Status objects and once to CLI text."""

from __future__ import annotations

from typing import Any


class MiniK8sError(Exception):
    """Base error: `code` is the HTTP status, `reason` the Kubernetes StatusReason."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


class BadRequest(MiniK8sError):
    code = 400
    reason = "BadRequest"


class Unauthorized(MiniK8sError):
    code = 401
    reason = "Unauthorized"


class Forbidden(MiniK8sError):
    code = 403
    reason = "Forbidden"


class NotFound(MiniK8sError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(MiniK8sError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(MiniK8sError):
    code = 409
    reason = "AlreadyExists"


class Conflict(MiniK8sError):
    code = 409
    reason = "Conflict"


class Gone(MiniK8sError):
    code = 410
    reason = "Expired"


class RequestEntityTooLarge(MiniK8sError):
    """413: a request body over the API server's cap (kube-apiserver's 3 MiB), refused before it is read whole."""

    code = 413
    reason = "RequestEntityTooLarge"


class ObjectTooLarge(MiniK8sError):
    """422: an object whose stored form is over etcd's per-value limit; Kubernetes answers etcd's
    "request is too large" with this reason, and 422 says the request itself was readable."""

    code = 422
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(MiniK8sError):
    code = 415
    reason = "UnsupportedMediaType"


class Unprocessable(MiniK8sError):
    """422 without field causes: a well-formed request that cannot be applied (a JSON patch `test` op)."""

    code = 422
    reason = "Invalid"


#: Kubernetes' CauseType for a field error, by the message's leading words (its field.ErrorType text).
_CAUSE_TYPES = (("Required value", "FieldValueRequired"), ("Forbidden", "FieldValueForbidden"),
                ("Unsupported value", "FieldValueNotSupported"), ("Duplicate value", "FieldValueDuplicate"),
                ("Not found", "FieldValueNotFound"), ("Too long", "FieldValueTooLong"),
                ("Too many", "FieldValueTooMany"), ("Internal error", "InternalError"))


def cause_type(message: str) -> str:
    return next((t for prefix, t in _CAUSE_TYPES if message.startswith(prefix)), "FieldValueInvalid")


def details(name: str, resource: str, group: str = "") -> dict[str, Any]:
    """StatusDetails as kube-apiserver writes them: `kind` is the plural resource (`pods`) for
    NotFound/AlreadyExists/Conflict, and empty fields are left out (Go's omitempty)."""
    return {key: value for key, value in (("name", name), ("group", group), ("kind", resource)) if value}


class Invalid(MiniK8sError):
    """422: `causes` is a list of (field path, message); `kind` is the Kind (`Pod`), as Kubernetes names it here."""

    code = 422
    reason = "Invalid"

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> None:
        texts = [f"{field}: {msg}" if field else msg for field, msg in causes]
        text = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        super().__init__(
            f'{kind} "{name}" is invalid: {text}',
            {
                **details(name, kind, group),
                "causes": [{"reason": cause_type(m), "message": m, "field": f} for f, m in causes],
            },
        )
        self.causes = causes


class TooManyRequests(MiniK8sError):
    code = 429
    reason = "TooManyRequests"


class Timeout(MiniK8sError):
    code = 504
    reason = "Timeout"


class Unavailable(MiniK8sError):
    code = 503
    reason = "ServiceUnavailable"


_BY_REASON: dict[str, type[MiniK8sError]] = {
    cls.reason: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, AlreadyExists, Conflict, Gone,
                RequestEntityTooLarge, UnsupportedMediaType, TooManyRequests, Timeout, Unavailable)
}


def from_status(code: int, body: dict[str, Any] | None) -> MiniK8sError:
    """Rebuild the error a Status object describes (used by the client)."""
    body = body or {}
    message = str(body.get("message") or f"HTTP {code}")
    reason = str(body.get("reason") or "")
    cls = _BY_REASON.get(reason)
    if cls is None:
        cls = next((c for c in _BY_REASON.values() if c.code == code), MiniK8sError)
    err = cls(message, body.get("details"))
    err.code = code
    if code == 422 and reason != ObjectTooLarge.reason:
        err.reason = "Invalid"
    return err
