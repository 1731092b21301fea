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


class UnsupportedMediaType(MiniK8sError):
    code = 415
    reason = "UnsupportedMediaType"


class Unprocessable(MiniK8sError):
    """422 without field causes: a well-formed request that cannot be applied (a JSON patch `test` op)."""

    code = 422
    reason = "Invalid"


class Invalid(MiniK8sError):
    """422: `causes` is a list of (field path, message)."""

    code = 422
    reason = "Invalid"

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str]]) -> None:
        text = "; ".join(f"{field}: {msg}" if field else msg for field, msg in causes)
        super().__init__(
            f'{kind} "{name}" is invalid: {text}',
            {
                "name": name,
                "kind": kind,
                "causes": [{"field": f, "message": m, "reason": "FieldValueInvalid"} for f, m in causes],
            },
        )
        self.causes = causes


class Timeout(MiniK8sError):
    code = 504
    reason = "Timeout"


class Unavailable(MiniK8sError):
    code = 503
    reason = "ServiceUnavailable"


_BY_REASON: dict[str, type[MiniK8sError]] = {
    cls.reason: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, AlreadyExists, Conflict, Gone,
                UnsupportedMediaType, Timeout, Unavailable)
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
    if code == 422:
        err.reason = "Invalid"
    return err
