"""The API's refusals as logic: the body cap middleware, the request envelope, parameter parsing,
integer ranges and the slow-watcher queue (no etcd, no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from minik8s import jsonc
from minik8s.api import kinds as k
from minik8s.api.validation import int_range_causes
from minik8s.apiserver import params
from minik8s.apiserver.envelope import check_envelope
from minik8s.apiserver.limits import MAX_DRAINED_BYTES, BodyLimit, check_object_size
from minik8s.apiserver.watchqueue import WatchQueue
from minik8s.errors import BadRequest, Gone, Invalid, ObjectTooLarge, from_status
from minik8s.store import StoreEvent

POD = k.lookup("Pod")


# --- the body cap --------------------------------------------------------------------------------
def run_body_limit(limit: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[list[Any], int]:
    """Drive BodyLimit around an app that reads the whole body; returns what was sent and bytes read."""
    sent: list[Any] = []
    read = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal read
        while True:
            msg = await receive()
            read += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> Any:
        return queue.pop(0)

    async def send(msg: Any) -> None:
        sent.append(msg)

    scope = {"type": "http", "path": "/api/v1/pods", "headers": headers}
    asyncio.run(BodyLimit(app, limit)(scope, receive, send))
    return sent, read


def test_declared_length_over_the_cap_is_refused_unread() -> None:
    sent, read = run_body_limit(10, [b"x" * 11], [(b"content-length", b"11")])
    assert sent[0]["status"] == 413 and read == 0
    assert (b"connection", b"close") not in sent[0]["headers"]  # the server drops the rest; the client reads 413
    huge = str(MAX_DRAINED_BYTES + 1).encode()
    sent, read = run_body_limit(10, [b"x" * 11], [(b"content-length", huge)])
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    status = jsonc.loads(sent[1]["body"])
    assert status["reason"] == "RequestEntityTooLarge" and status["code"] == 413


def test_streamed_body_is_refused_once_past_the_cap() -> None:
    sent, read = run_body_limit(10, [b"x" * 6, b"x" * 6, b"x" * 6], [])
    assert sent[0]["status"] == 413
    assert read == 6  # the chunk that crossed the cap never reached the app


def test_body_at_the_cap_passes() -> None:
    sent, read = run_body_limit(10, [b"x" * 5, b"x" * 5], [(b"content-length", b"10")])
    assert sent[0]["status"] == 200 and read == 10


def test_object_size_limit() -> None:
    check_object_size("Pod", "p", {"a": "x" * 1000})
    with pytest.raises(ObjectTooLarge, match='Pod "p" is too large to store'):
        check_object_size("Pod", "p", {"a": "x" * (1536 * 1024)})
    err = from_status(422, ObjectTooLarge("big").to_status())
    assert err.code == 422 and err.reason == "RequestEntityTooLarge"


# --- the envelope --------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"metadata": "x"}, "metadata"),
    ({"metadata": [1]}, "metadata"),
    ({"metadata": {"name": 5}}, "metadata.name"),
    ({"metadata": {"name": "p", "namespace": {}}}, "metadata.namespace"),
    ({"metadata": {"name": "p", "resourceVersion": 7}}, "metadata.resourceVersion"),
    ({"metadata": {"name": "p", "resourceVersion": "abc"}}, "metadata.resourceVersion"),
    ({"kind": ["Pod"]}, "kind"),
    ({"apiVersion": 1}, "apiVersion"),
])
def test_envelope_names_the_wrong_typed_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as exc:
        check_envelope(POD, body)
    assert [c[0] for c in exc.value.causes] == [field]


def test_envelope_refuses_non_objects_and_other_kinds_and_defaults_missing_ones() -> None:
    for body in ([], "x", None, 3):
        with pytest.raises(BadRequest, match="must be a JSON object"):
            check_envelope(POD, body)
    with pytest.raises(BadRequest, match="the body is a v1/Service, but this URL serves v1/Pod"):
        check_envelope(POD, {"kind": "Service"})
    with pytest.raises(BadRequest, match="apps/v1/Pod"):
        check_envelope(POD, {"apiVersion": "apps/v1"})
    body = {"apiVersion": None, "kind": "", "metadata": {"name": "p"}}
    assert check_envelope(POD, body) == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert body["apiVersion"] is None  # the caller's body is left alone


# --- parameters ----------------------------------------------------------------------------------
def test_parameters() -> None:
    assert params.int_param({"limit": "5"}, "limit", 0) == 5
    assert params.int_param({}, "gracePeriodSeconds", 0, fallback=3) == 3
    assert params.int_param({}, "gracePeriodSeconds", 0) is None
    for bad in ({"limit": "abc"}, {"limit": "-1"}, {"limit": "1.5"}, {"limit": "9" * 40}):
        with pytest.raises(BadRequest, match="invalid limit"):
            params.int_param(bad, "limit", 0)
    with pytest.raises(BadRequest, match="gracePeriodSeconds"):
        params.int_param({}, "gracePeriodSeconds", 0, fallback=True)
    assert params.timeout_seconds({"timeoutSeconds": "300.0"}) == 300.0
    for bad in ("abc", "-1", "inf", "nan"):
        with pytest.raises(BadRequest, match="invalid timeoutSeconds"):
            params.timeout_seconds({"timeoutSeconds": bad})
    assert params.resource_version({"resourceVersion": "42"}) == "42"
    for bad in ("abc", "-1", "1e3", "٣"):  # an Arabic-Indic digit is a digit to str.isdigit, not to etcd
        with pytest.raises(BadRequest, match="invalid resourceVersion"):
            params.resource_version({"resourceVersion": bad})
    assert params.bool_param({"watch": "T"}, "watch") and not params.bool_param({"watch": "0"}, "watch")
    with pytest.raises(BadRequest, match='invalid watch "maybe"'):
        params.bool_param({"watch": "maybe"}, "watch")


def test_integers_beyond_their_go_type() -> None:
    assert int_range_causes({"spec": {"replicas": 2**31 - 1, "terminationGracePeriodSeconds": 2**63 - 1}}) == []
    causes = int_range_causes({"spec": {"replicas": 2**31, "x": [{"port": -(2**31) - 1}],
                                        "terminationGracePeriodSeconds": 2**63, "flag": True}})
    assert [c[0] for c in causes] == ["spec.replicas", "spec.x[0].port", "spec.terminationGracePeriodSeconds"]
    assert "32-bit" in causes[0][1] and "64-bit" in causes[2][1]


# --- slow watchers -------------------------------------------------------------------------------
def test_watch_queue_overflow_ends_in_one_expired_marker() -> None:
    async def scenario() -> list[StoreEvent]:
        queue = WatchQueue(3)
        for i in range(10):
            queue.offer(StoreEvent("MODIFIED", "k", {"i": i}, i + 1))
        assert queue.overflowed and queue.qsize() == 1
        return [await queue.get()]

    got = asyncio.run(scenario())
    assert got[0].type == "ERROR" and got[0].revision == -1


def test_watch_queue_under_the_limit_delivers_everything_in_order() -> None:
    async def scenario() -> list[int]:
        queue = WatchQueue(5)
        for i in range(5):
            queue.offer(StoreEvent("MODIFIED", "k", None, i))
        return [(await queue.get()).revision for _ in range(5)]

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]
    status = WatchQueue(7).expired_status()
    assert status["code"] == Gone.code and status["reason"] == "Expired" and "7 events behind" in status["message"]
