"""What the API server refuses before it does any work: request bodies over a cap (413), as
kube-apiserver's 3 MiB limit on a request body, and objects whose stored form is over etcd's
per-value limit (422).

The body cap is a plain ASGI middleware around `receive`: a declared Content-Length over the cap is
answered at once without handing a byte to the app (the server then reads and drops the rest, so a
client that sends its whole body before reading sees the 413), and a body that arrives without one
(chunked) is counted while it streams, so no handler ever holds more than the cap in memory.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s import jsonc
from minik8s.errors import ObjectTooLarge, RequestEntityTooLarge

log = logging.getLogger("minik8s.apiserver")

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024  # kube-apiserver's MaxRequestBodyBytes
#: A refused body up to this size is read and dropped after the 413 so the client sees the answer;
#: beyond it (or of unknown length) the connection is closed instead.
MAX_DRAINED_BYTES = 64 * 1024 * 1024
MAX_OBJECT_BYTES = 1536 * 1024  # etcd's default --max-request-bytes (1.5 MiB): a bigger value is refused there


def _too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"the request body is too large: limit is {limit} bytes")


async def _refuse(send: Any, err: RequestEntityTooLarge, close: bool) -> None:
    """Answer 413. Without `close` the server goes on reading the rest of the body and drops it, so a
    client still sending (most send the whole body before they read) gets the answer, not a reset."""
    body = jsonc.dumps(err.to_status())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": err.code,
                "headers": headers + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a request body over `limit` bytes, declared or streamed."""

    def __init__(self, app: Any, limit: int = MAX_REQUEST_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            log.info("request body refused", extra={"path": scope["path"], "bytes": int(declared)})
            await _refuse(send, _too_large(self.limit), close=int(declared) > MAX_DRAINED_BYTES)
            return
        seen = 0
        started = False

        async def counted_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)
            return message

        async def tracked_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except RequestEntityTooLarge as exc:  # raised by counted_receive in a handler that did not answer it
            if started:
                raise
            log.info("request body refused", extra={"path": scope["path"], "bytes": seen})
            await _refuse(send, exc, close=True)  # no length said how much more would come


def check_object_size(kind: str, name: str, obj: dict[str, Any]) -> None:
    """ObjectTooLarge (422) when the object's stored form would be over etcd's per-value limit."""
    size = len(jsonc.dumps(obj))
    if size > MAX_OBJECT_BYTES:
        raise ObjectTooLarge(f'{kind} "{name}" is too large to store: {size} bytes serialized, '
                             f"over the limit of {MAX_OBJECT_BYTES} bytes (1.5 MiB) per object",
                             {"name": name, "kind": kind,
                              "causes": [{"reason": "FieldValueTooLong", "field": "<root>",
                                          "message": f"Too long: object is {size} bytes, limit {MAX_OBJECT_BYTES}"}]})
