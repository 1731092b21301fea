"""ServiceAccount JWTs: claims, signature, lifetime, audience and liveness checks (no API server)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from minik8s.auth.serviceaccount import (
    DEFAULT_ISSUER,
    LEEWAY_S,
    BoundPod,
    ServiceAccountAuthenticator,
    TokenError,
    TokenIssuer,
    load_or_create_key,
)
from minik8s.auth.user import SERVICE_ACCOUNTS, service_account_user

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Objects:
    """Live object uids by (resource, namespace, name)."""

    def __init__(self, **uids: str) -> None:
        self.uids = {tuple(key.split("__")): uid for key, uid in uids.items()}

    def uid(self, resource: str, namespace: str, name: str) -> str | None:
        return self.uids.get((resource, namespace, name))


def part(token: str, i: int) -> dict:
    seg = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> TokenIssuer:
    iss = TokenIssuer.ephemeral()
    iss.clock = clock
    return iss


def test_claims_are_kubernetes_bound_token_claims(issuer: TokenIssuer) -> None:
    token, exp = issuer.issue("team", "builder", "sa-uid", ["minik8s"], 3600, BoundPod("web", "pod-uid"))
    header, claims = part(token, 0), part(token, 1)
    assert header == {"alg": "ES256", "kid": issuer.key_id}
    assert claims["iss"] == DEFAULT_ISSUER and claims["sub"] == "system:serviceaccount:team:builder"
    assert claims["aud"] == ["minik8s"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (int(NOW), int(NOW), int(NOW) + 3600)
    assert exp == claims["exp"]
    assert claims["kubernetes.io"] == {"namespace": "team", "serviceaccount": {"name": "builder", "uid": "sa-uid"},
                                       "pod": {"name": "web", "uid": "pod-uid"}}
    assert claims["jti"]
    verified = issuer.verify(token, ("minik8s",))
    assert (verified.namespace, verified.name, verified.uid, verified.pod) == \
        ("team", "builder", "sa-uid", BoundPod("web", "pod-uid"))


def test_expired_token_is_refused_after_the_leeway(issuer: TokenIssuer, clock: Clock) -> None:
    token, exp = issuer.issue("ns", "default", "u", ["minik8s"], 600)
    clock.now = exp + LEEWAY_S  # within the tolerated skew
    issuer.verify(token, ("minik8s",))
    clock.now = exp + LEEWAY_S + 1
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token, ("minik8s",))


def test_token_not_valid_before_nbf(issuer: TokenIssuer, clock: Clock) -> None:
    token, _ = issuer.issue("ns", "default", "u", ["minik8s"], 600)
    clock.now = NOW - LEEWAY_S - 1
    with pytest.raises(TokenError, match="not valid yet"):
        issuer.verify(token, ("minik8s",))


def test_wrong_audience_is_refused(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("ns", "default", "u", ["vault"], 600)
    with pytest.raises(TokenError, match="audiences"):
        issuer.verify(token, ("minik8s",))
    assert issuer.verify(token, ("minik8s", "vault")).audiences == ("vault",)


def test_tampered_claims_or_signature_are_refused(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("ns", "default", "u", ["minik8s"], 600)
    head, body, sig = token.split(".")
    claims = part(token, 1)
    claims["kubernetes.io"]["namespace"] = "kube-system"
    claims["sub"] = "system:serviceaccount:kube-system:default"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="invalid signature"):
        issuer.verify(f"{head}.{forged}.{sig}", ("minik8s",))
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(TokenError):
        issuer.verify(f"{head}.{body}.{flipped}", ("minik8s",))
    other = TokenIssuer.ephemeral()
    with pytest.raises(TokenError, match="invalid signature"):
        other.verify(token, ("minik8s",))


def test_alg_none_is_refused(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("ns", "default", "u", ["minik8s"], 600)
    _, body, _ = token.split(".")
    none = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": issuer.key_id}).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="algorithm"):
        issuer.verify(f"{none}.{body}.", ("minik8s",))


def test_authenticator_checks_the_account_and_pod_still_exist(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("ns", "app", "sa-1", ["minik8s"], 600, BoundPod("web", "pod-1"))
    live = Objects(serviceaccounts__ns__app="sa-1", pods__ns__web="pod-1")
    auth = ServiceAccountAuthenticator(issuer, live)
    user = auth.authenticate(token)
    assert user is not None and user.name == "system:serviceaccount:ns:app" and user.uid == "sa-1"
    assert set(user.groups) == set(service_account_user("ns", "app").groups) and SERVICE_ACCOUNTS in user.groups
    assert user.extra["authentication.kubernetes.io/pod-name"] == ["web"]
    assert user.extra["authentication.kubernetes.io/pod-uid"] == ["pod-1"]
    assert ServiceAccountAuthenticator(issuer, Objects(serviceaccounts__ns__app="sa-1")).authenticate(token) is None
    recreated_pod = Objects(serviceaccounts__ns__app="sa-1", pods__ns__web="pod-2")
    assert ServiceAccountAuthenticator(issuer, recreated_pod).authenticate(token) is None
    recreated_sa = Objects(serviceaccounts__ns__app="sa-2", pods__ns__web="pod-1")
    assert ServiceAccountAuthenticator(issuer, recreated_sa).authenticate(token) is None
    assert ServiceAccountAuthenticator(issuer, live, ("other",)).authenticate(token) is None


def test_authenticator_ignores_tokens_it_did_not_sign(issuer: TokenIssuer) -> None:
    auth = ServiceAccountAuthenticator(issuer, Objects())
    assert auth.authenticate("test-token-0123456789") is None
    assert auth.authenticate("a.b.c") is None
    foreign, _ = TokenIssuer.ephemeral().issue("ns", "app", "u", ["minik8s"], 600)
    assert auth.authenticate(foreign) is None


def test_signing_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "pki" / "sa.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_key(path)
    assert key.private_numbers() == again.private_numbers()
    token, _ = TokenIssuer(key).issue("ns", "a", "u", ["minik8s"], 600)
    TokenIssuer(again).verify(token, ("minik8s",))
    path.write_text("not a key")
    with pytest.raises(ValueError):
        load_or_create_key(path)


def test_a_remembered_token_still_expires_and_still_dies_with_its_pod(issuer: TokenIssuer, clock: Clock) -> None:
    token, exp = issuer.issue("ns", "app", "sa-1", ["minik8s"], 600, BoundPod("web", "pod-1"))
    live = Objects(serviceaccounts__ns__app="sa-1", pods__ns__web="pod-1")
    auth = ServiceAccountAuthenticator(issuer, live)
    assert auth.authenticate(token) is not None and auth.authenticate(token) is not None  # second: cached
    del live.uids[("pods", "ns", "web")]
    assert auth.authenticate(token) is None
    live.uids[("pods", "ns", "web")] = "pod-1"
    clock.now = exp + LEEWAY_S + 1
    assert auth.authenticate(token) is None
