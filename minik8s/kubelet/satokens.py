"""ServiceAccount tokens for the pods on this node (the kubelet's token manager).

For each projected `serviceAccountToken` source the kubelet asks the API for a token bound to the
pod (TokenRequest with `boundObjectRef` to the pod, the source's audience and expirationSeconds)
and keeps it until 80% of its lifetime has passed, or it is older than a day, whichever is first
(Kubernetes' token manager rule); the next sync of the pod after that asks again, and the atomic
writer swaps the file. Tokens of pods that are gone expire out of the cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from minik8s.api import kinds as k
from minik8s.api.types import Pod
from minik8s.errors import MiniK8sError

log = logging.getLogger(__name__)

REFRESH_FRACTION = 0.8
MAX_TOKEN_AGE_S = 24 * 3600


class TokenUnavailable(Exception):
    """The API would not give the pod a token (and no valid cached one is left)."""


@dataclass(frozen=True)
class CachedToken:
    token: str
    issued: float
    expires: float

    def needs_refresh(self, now: float) -> bool:
        lifetime = self.expires - self.issued
        return now >= self.issued + REFRESH_FRACTION * lifetime or now - self.issued >= MAX_TOKEN_AGE_S


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class TokenManager:
    def __init__(self, client: Any, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._cache: dict[tuple[str, str, str, int], CachedToken] = {}
        self._lock = threading.Lock()

    def token(self, pod: Pod, audience: str | None, expiration_s: int) -> str:
        """A valid token for `pod`'s ServiceAccount, asking the API only when the cached one is due."""
        uid = pod.metadata.uid or ""
        account = pod.spec.serviceAccountName or "default"
        key = (uid, account, audience or "", int(expiration_s))
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            cached = self._cache.get(key)
        if cached is not None and not cached.needs_refresh(now):
            return cached.token
        try:
            fresh = self._request(pod, account, audience, expiration_s, now)
        except MiniK8sError as exc:
            if cached is not None and now < cached.expires:
                log.warning("token refresh failed, keeping the current token",
                            extra={"pod": pod.name, "error": str(exc)})
                return cached.token
            raise TokenUnavailable(f'failed to fetch token for service account "{account}": {exc.message}') from None
        with self._lock:
            self._cache[key] = fresh
        log.info("service account token issued", extra={"pod": pod.name, "serviceaccount": account,
                                                        "expires": fresh.expires})
        return fresh.token

    def _request(self, pod: Pod, account: str, audience: str | None, expiration_s: int, now: float) -> CachedToken:
        ns = pod.metadata.namespace or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [], "expirationSeconds": int(expiration_s),
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.name,
                                            "uid": pod.metadata.uid}}}
        out = self.client.request("POST", k.lookup("ServiceAccount").url(ns, account, "token"), json=body)
        status = out.get("status") or {}
        expires = _parse_time(status["expirationTimestamp"]) if status.get("expirationTimestamp") \
            else now + expiration_s
        return CachedToken(str(status["token"]), now, expires)

    def forget(self, pod_uid: str) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == pod_uid]:
                del self._cache[key]

    def _drop_expired(self, now: float) -> None:
        for key in [key for key, tok in self._cache.items() if now >= tok.expires]:
            del self._cache[key]
