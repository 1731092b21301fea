"""Warnings a request earns without failing (Kubernetes' `Warning: 299` response headers; kubectl prints them).

A request handler opens `collect()` around its work; anything below it (admission plug-ins running in a
worker thread: anyio copies the context, so they append to the same list) calls `add`. Outside a
request `add` does nothing, so library callers and tests need no setup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from starlette.responses import Response

_CURRENT: ContextVar[list[str] | None] = ContextVar("minik8s_request_warnings", default=None)
MAX_WARNINGS = 20  # as kube-apiserver caps them, so one object cannot flood the headers


def add(message: str) -> None:
    said = _CURRENT.get()
    if said is not None and message not in said and len(said) < MAX_WARNINGS:
        said.append(message)


@contextlib.contextmanager
def collect() -> Iterator[list[str]]:
    said: list[str] = []
    token = _CURRENT.set(said)
    try:
        yield said
    finally:
        _CURRENT.reset(token)


def attach(response: Response, said: list[str]) -> Response:
    """Each warning as its own `Warning: 299 - "text"` header (RFC 7234 form, as client-go parses it)."""
    for message in said:
        text = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        response.headers.append("Warning", f'299 - "{text}"')
    return response
