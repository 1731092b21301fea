"""etcd v3 through `etcd-sdk-python` (import name `pyetcd`).

`etcd3` 0.12 fails to import with protobuf >= 4 (Ray needs a modern protobuf); pyetcd is a
maintained fork with the same API. Transactions go through its gRPC stub directly so the
commit revision is known without a second read.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyetcd
from pyetcd import exceptions as etcd_exc
from pyetcd.etcdrpc import rpc_pb2 as rpc

from minik8s.errors import AlreadyExists, Conflict, Gone, NotFound, Unavailable

log = logging.getLogger("minik8s.store")

DEFAULT_TIMEOUT_S = 10.0


@dataclass
class StoreEvent:
    type: str  # ADDED | MODIFIED | DELETED | ERROR
    key: str
    object: dict[str, Any] | None
    revision: int
    prev: dict[str, Any] | None = None


def _range_end(prefix: str) -> bytes:
    b = bytearray(prefix.encode())
    b[-1] += 1
    return bytes(b)


def _decode(value: bytes, revision: int) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def _encode(obj: dict[str, Any]) -> bytes:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)  # the revision is etcd's, never stored in the value
    return json.dumps({**obj, "metadata": meta}, separators=(",", ":")).encode()


class EtcdStore:
    def __init__(self, endpoints: list[str], timeout: float = DEFAULT_TIMEOUT_S) -> None:
        host, _, port = endpoints[0].replace("http://", "").rpartition(":")
        self.endpoints = endpoints
        self._client = pyetcd.client(host=host, port=int(port), timeout=timeout)
        self._timeout = timeout

    def close(self) -> None:
        self._client.close()

    def _txn(self, req: rpc.TxnRequest) -> rpc.TxnResponse:
        try:
            return self._client.kvstub.Txn(req, self._timeout)
        except Exception as exc:  # grpc errors: the store is down or slow
            raise Unavailable(f"etcd unavailable: {exc}") from exc

    def _range(self, key: str, prefix: bool = False) -> rpc.RangeResponse:
        req = rpc.RangeRequest(key=key.encode())
        if prefix:
            req.range_end = _range_end(key)
        try:
            return self._client.kvstub.Range(req, self._timeout)
        except Exception as exc:
            raise Unavailable(f"etcd unavailable: {exc}") from exc

    def revision(self) -> int:
        resp = self._range("/registry/\x00")
        return int(resp.header.revision)

    def get(self, key: str) -> dict[str, Any]:
        resp = self._range(key)
        if not resp.kvs:
            raise NotFound(key)
        kv = resp.kvs[0]
        return _decode(kv.value, kv.mod_revision)

    def list(self, prefix: str) -> tuple[list[dict[str, Any]], int]:
        resp = self._range(prefix, prefix=True)
        return [_decode(kv.value, kv.mod_revision) for kv in resp.kvs], int(resp.header.revision)

    def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        cmp = rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=_encode(obj)))
        resp = self._txn(rpc.TxnRequest(compare=[cmp], success=[put]))
        if not resp.succeeded:
            raise AlreadyExists(key)
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(resp.header.revision)}}

    def update(self, key: str, obj: dict[str, Any], expected_revision: int | None) -> dict[str, Any]:
        """Replace the object; with `expected_revision`, only if nobody wrote it since (else Conflict)."""
        if expected_revision is None:
            cmp = rpc.Compare(key=key.encode(), result=rpc.Compare.GREATER, target=rpc.Compare.CREATE,
                              create_revision=0)
        else:
            cmp = rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                              mod_revision=expected_revision)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=_encode(obj)))
        get = rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))
        resp = self._txn(rpc.TxnRequest(compare=[cmp], success=[put], failure=[get]))
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise NotFound(key)
            raise Conflict(key)
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(resp.header.revision)}}

    def delete(self, key: str, expected_revision: int | None = None) -> dict[str, Any]:
        cmps = []
        if expected_revision is not None:
            cmps.append(rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                                    mod_revision=expected_revision))
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode(), prev_kv=True))
        get = rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))
        resp = self._txn(rpc.TxnRequest(compare=cmps, success=[op], failure=[get]))
        if not resp.succeeded:
            if not resp.responses[0].response_range.kvs:
                raise NotFound(key)
            raise Conflict(key)
        prev = resp.responses[0].response_delete_range.prev_kvs
        if not prev:
            raise NotFound(key)
        return _decode(prev[0].value, resp.header.revision)

    def compact(self, revision: int) -> None:
        self._client.compact(revision, physical=True)

    def watch(self, prefix: str, start_revision: int, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """Stream events under `prefix` from `start_revision` into `callback` (on etcd's thread).

        Raises Gone when the revision was compacted. Returns a function that cancels the watch.
        """

        def on_response(resp: Any) -> None:
            if isinstance(resp, etcd_exc.RevisionCompactedError):
                callback(StoreEvent("ERROR", prefix, None, resp.compacted_revision))
                return
            if isinstance(resp, Exception):
                log.warning("etcd watch broke", extra={"prefix": prefix, "error": str(resp)})
                callback(StoreEvent("ERROR", prefix, None, 0))
                return
            for ev in resp.events:
                key = ev.key.decode()
                if isinstance(ev, pyetcd.events.DeleteEvent):
                    obj = _decode(ev.prev_value, ev.mod_revision) if ev.prev_value else None
                    callback(StoreEvent("DELETED", key, obj, ev.mod_revision))
                else:
                    etype = "ADDED" if ev.version == 1 else "MODIFIED"
                    prev = _decode(ev.prev_value, ev.prev_mod_revision) if ev.prev_value else None
                    callback(StoreEvent(etype, key, _decode(ev.value, ev.mod_revision), ev.mod_revision, prev))

        try:
            watch_id = self._client.add_watch_prefix_callback(
                prefix, on_response, start_revision=start_revision, prev_kv=True)
        except etcd_exc.RevisionCompactedError as exc:
            raise Gone(f"too old resource version: {start_revision} ({exc.compacted_revision})") from exc
        except etcd_exc.Etcd3Exception as exc:
            raise Unavailable(f"etcd unavailable: {exc}") from exc
        lock = threading.Lock()
        cancelled = False

        def cancel() -> None:
            nonlocal cancelled
            with lock:
                if not cancelled:
                    cancelled = True
                    try:
                        self._client.cancel_watch(watch_id)
                    except Exception as exc:  # the watcher may already be gone with the connection
                        log.debug("cancel watch failed: %s", exc)

        return cancel
