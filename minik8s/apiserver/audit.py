"""The audit log: one audit.k8s.io/v1 Event (level Metadata) per mutating request, as JSON lines.

Who (the authenticated user), what (verb and object reference), from where (source IP, user agent),
the answer's code, and when - what kube-apiserver writes at `Metadata` level, never the bodies (they hold
Secrets). The API server's outermost middleware records each request once its response is sent,
refusals included (401, 403, 422 ...). Lines are written by one thread, off the event loop; the file is
rotated by size, keeping `backups` old files (`audit.log.1` is the newest of them), all mode 0600.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from minik8s import auth, jsonc
from minik8s.auth.authz import request_attributes

log = logging.getLogger("minik8s.apiserver.audit")

AUDIT_DIR = "audit"
AUDIT_FILE = "audit.log"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_MAX_BYTES = 50 * 2**20  # kube-apiserver's --audit-log-maxsize is in MB; 50 MB of ~600-byte lines
DEFAULT_BACKUPS = 5  # --audit-log-maxbackup
NAME_BODY_LIMIT = 2**20  # a create's name is read from its answer only when the answer is this small
FILE_MODE = 0o600


def log_path(state_dir: str | Path) -> Path:
    """Where a cluster's audit log lives: `<state_dir>/audit/audit.log`."""
    return Path(state_dir) / AUDIT_DIR / AUDIT_FILE


_ANNOTATIONS: ContextVar[dict[str, str] | None] = ContextVar("minik8s_audit_annotations", default=None)


def annotate(key: str, value: str) -> None:
    """Add an annotation to the audit event of the request being served (admission plug-ins call it, e.g.
    Pod Security's `audit` mode); outside an audited request it does nothing."""
    notes = _ANNOTATIONS.get()
    if notes is not None:
        notes[key] = value


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    """Appends events to `path`, rotating at `max_bytes`; `record` only queues (cheap, thread-safe)."""

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        self._file = self._open()
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    def _open(self) -> Any:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        return os.fdopen(fd, "ab")

    def record(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self._open()

    def _write(self, event: dict[str, Any]) -> None:
        line = jsonc.dumps(event) + b"\n"
        size = self._file.tell()
        if size and size + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                while event is not None:  # drain what is queued, then flush once
                    self._write(event)
                    try:
                        event = self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._file.flush()
            except OSError as exc:  # a full disk must not take the API server down with it
                log.error("cannot write the audit log: %s", exc, extra={"path": str(self.path)})
            if event is None:
                self._file.close()
                return


def event_for(scope: dict[str, Any], status: int, received: str, created_name: str = "",
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The audit.k8s.io/v1 Event of one finished request (level Metadata, stage ResponseComplete)."""
    user = auth.user_of(scope)
    query = scope.get("query_string", b"").decode("latin-1")
    attrs = request_attributes(user, scope.get("method", ""), scope.get("path", ""), query)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    client = scope.get("client")
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete", "requestURI": scope.get("path", "") + (f"?{query}" if query else ""),
        "verb": attrs.verb, "user": user.to_dict(), "sourceIPs": [client[0]] if client else [],
        "userAgent": headers.get("user-agent", ""),
        "responseStatus": {"metadata": {}, "code": status},
        "requestReceivedTimestamp": received, "stageTimestamp": _now()}
    if attrs.resource_request:
        ref = {"resource": attrs.resource, "namespace": attrs.namespace, "name": attrs.name or created_name,
               "apiGroup": attrs.api_group, "apiVersion": attrs.api_version, "subresource": attrs.subresource}
        event["objectRef"] = {k: v for k, v in ref.items() if v}
    if annotations:
        event["annotations"] = dict(annotations)
    return event


def _created_name(body: bytes) -> str:
    try:
        obj = jsonc.loads(body)
    except jsonc.JSONDecodeError:
        return ""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return str(meta.get("name") or "") if isinstance(meta, dict) and obj.get("kind") != "Status" else ""


@dataclass
class _Seen:
    """What the middleware keeps of one POST: its request body and answer (to name the object created)."""

    status: int = 500
    request: bytearray | None = None
    response: bytearray | None = None


def _append(buffer: bytearray | None, chunk: bytes) -> bytearray | None:
    """`buffer` plus `chunk`, or None once it would exceed NAME_BODY_LIMIT (too big to be worth parsing)."""
    if buffer is None or len(buffer) + len(chunk) > NAME_BODY_LIMIT:
        return None
    buffer += chunk
    return buffer


class AuditMiddleware:
    """Plain ASGI middleware, outermost: it sees every mutating request, refused ones too."""

    def __init__(self, app: Any, audit: AuditLog) -> None:
        self.app, self.audit = app, audit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in MUTATING_METHODS:
            await self.app(scope, receive, send)
            return
        received = _now()
        post = scope["method"] == "POST"
        seen = _Seen(request=bytearray() if post else None, response=bytearray() if post else None)
        notes: dict[str, str] = {}
        token = _ANNOTATIONS.set(notes)  # the handler runs in this context (its threads get a copy of it)

        async def reading() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen.request = _append(seen.request, message.get("body", b""))
            return message

        async def watching(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.status = int(message["status"])
            elif message["type"] == "http.response.body":
                seen.response = _append(seen.response, message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, reading if post else receive, watching)
        finally:
            _ANNOTATIONS.reset(token)
            # a create names its object in its body (refused ones too, as Kubernetes' audit does), or, with
            # generateName, only in the answer
            name = _created_name(bytes(seen.request)) if seen.request else ""
            if not name and seen.response and seen.status < 300:
                name = _created_name(bytes(seen.response))
            self.audit.record(event_for(scope, seen.status, received, name, notes))


def read_lines(path: Path, last: int) -> list[str]:
    """The last `last` lines of the log, reaching into the newest rotated file when the current is short."""
    lines: list[str] = []
    for candidate in (path, path.with_name(f"{path.name}.1")):
        if len(lines) >= last or not candidate.exists():
            continue
        with candidate.open("rb") as f:
            older = f.read().decode(errors="replace").splitlines()
        lines = older + lines
    return lines[-last:] if last > 0 else []


def follow(path: Path, poll_s: float, stop: Callable[[], bool]) -> Iterator[str]:
    """New lines as they are written, across rotations (a new inode at `path` starts over from its top)."""
    def reopen() -> tuple[Any, int]:
        f = path.open("rb")
        return f, os.fstat(f.fileno()).st_ino

    f, inode = reopen()
    f.seek(0, os.SEEK_END)
    pending = b""
    try:
        while not stop():
            try:
                rotated = os.stat(path).st_ino != inode
            except FileNotFoundError:
                rotated = False
            chunk = f.read()  # after the rotation check: what the old file got last is still read
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode(errors="replace")
            if rotated:
                f.close()
                f, inode = reopen()
            elif not chunk:
                time.sleep(poll_s)
    finally:
        f.close()
