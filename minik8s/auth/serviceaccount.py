"""ServiceAccount tokens: bound, expiring JWTs (Kubernetes' TokenRequest tokens) and their authenticator.

A token is an ES256 JWT signed with the cluster's service-account key (`<state>/pki/sa.key`, 0600;
kube-apiserver's `--service-account-signing-key-file`). Its claims are Kubernetes':

    {"iss": ISSUER, "sub": "system:serviceaccount:<ns>:<name>", "aud": ["minik8s"],
     "exp": …, "iat": …, "nbf": …, "jti": "<uuid>",
     "kubernetes.io": {"namespace": ns, "serviceaccount": {"name", "uid"}, "pod": {"name", "uid"}}}

`ServiceAccountAuthenticator` accepts a token only while its signature, issuer, lifetime and
audience check out AND the ServiceAccount (and the pod it is bound to, if any) still exist with the
uids in the claims: deleting the pod or the account revokes every token made for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from minik8s.auth.user import SERVICE_ACCOUNT_PREFIX, UserInfo, service_account_user

log = logging.getLogger("minik8s.auth.serviceaccount")

#: kube-apiserver's conventional `--service-account-issuer` (kubeadm's default).
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: The audience the API server accepts (`--api-audiences`) and gives tokens that ask for none.
DEFAULT_AUDIENCE = "minik8s"
ALGORITHM = "ES256"
COORDINATE_BYTES = 32  # P-256: r and s are 32 bytes each in a JWS signature
#: Clock skew tolerated on exp/nbf, as Kubernetes' validator (go-jose's DefaultLeeway).
LEEWAY_S = 60
CLAIMS_KEY = "kubernetes.io"
#: UserInfo.extra keys kube-apiserver sets for a pod-bound token.
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
#: Verified tokens remembered (their signature and claims, not their liveness): an ES256 verification
#: costs ~0.5-1 ms of CPU on the API server's event loop, and a pod sends the same token for an hour.
VERIFIED_CACHE_MAX = 10000


class TokenError(ValueError):
    """A token that is not valid (the message says why; never shown to the caller, only logged)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """The signing key at `path` (PKCS#8 PEM), made at the first start with mode 0600."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: the service-account key must be an EC P-256 private key")
    return key


@dataclass(frozen=True)
class BoundPod:
    name: str
    uid: str


@dataclass(frozen=True)
class TokenClaims:
    """The claims of a verified token that matter for authentication."""

    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires: int
    issued: int
    pod: BoundPod | None = None
    jti: str = ""


@dataclass
class TokenIssuer:
    """Signs and verifies ServiceAccount JWTs with one key."""

    key: ec.EllipticCurvePrivateKey
    issuer: str = DEFAULT_ISSUER
    clock: Callable[[], float] = time.time
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = _b64(hashlib.sha256(der).digest())  # kube-apiserver's kid: the hash of the public key

    @classmethod
    def ephemeral(cls, issuer: str = DEFAULT_ISSUER) -> TokenIssuer:
        """A key that lives as long as this process (tests, and API servers run without a state dir)."""
        return cls(ec.generate_private_key(ec.SECP256R1()), issuer)

    # --- issuing ---------------------------------------------------------------------------------
    def issue(self, namespace: str, name: str, uid: str, audiences: list[str], expiration_s: int,
              pod: BoundPod | None = None) -> tuple[str, int]:
        """A signed token and its expiry (epoch seconds)."""
        now = int(self.clock())
        exp = now + int(expiration_s)
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if pod is not None:
            private["pod"] = {"name": pod.name, "uid": pod.uid}
        claims = {"aud": list(audiences), "exp": exp, "iat": now, "nbf": now, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), CLAIMS_KEY: private, "sub": f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"}
        header = {"alg": ALGORITHM, "kid": self.key_id}
        signing_input = f"{_b64(json.dumps(header, separators=(',', ':')).encode())}." \
                        f"{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")
        return f"{signing_input}.{_b64(signature)}", exp

    # --- verifying -------------------------------------------------------------------------------
    def looks_like_ours(self, token: str) -> bool:
        """Cheap pre-check: three dot-separated parts whose header names our key (other tokens: not mine)."""
        if token.count(".") != 2:
            return False
        try:
            header = json.loads(_unb64(token.split(".", 1)[0]))
        except ValueError:
            return False
        return isinstance(header, dict) and header.get("kid") == self.key_id

    def verify(self, token: str, audiences: tuple[str, ...]) -> TokenClaims:
        """The claims of a token signed by our key, within its lifetime, for one of `audiences`."""
        try:
            head_b64, body_b64, sig_b64 = token.split(".")
            header = json.loads(_unb64(head_b64))
            signature = _unb64(sig_b64)
        except ValueError:
            raise TokenError("malformed token") from None
        alg = header.get("alg") if isinstance(header, dict) else None
        if alg != ALGORITHM:  # never "none", never a MAC keyed with our public key
            raise TokenError(f"unexpected signing algorithm {alg!r}")
        if len(signature) != 2 * COORDINATE_BYTES:
            raise TokenError("malformed signature")
        der = encode_dss_signature(int.from_bytes(signature[:COORDINATE_BYTES], "big"),
                                   int.from_bytes(signature[COORDINATE_BYTES:], "big"))
        try:
            self.key.public_key().verify(der, f"{head_b64}.{body_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise TokenError("invalid signature") from None
        try:
            claims = json.loads(_unb64(body_b64))
        except ValueError:
            raise TokenError("malformed claims") from None
        return self._check_claims(claims, audiences)

    def _check_claims(self, claims: Any, audiences: tuple[str, ...]) -> TokenClaims:
        if not isinstance(claims, dict):
            raise TokenError("malformed claims")
        if claims.get("iss") != self.issuer:
            raise TokenError(f"issuer {claims.get('iss')!r} is not {self.issuer!r}")
        now = self.clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, int) or now > exp + LEEWAY_S:
            raise TokenError("token has expired")
        if isinstance(nbf, int) and now < nbf - LEEWAY_S:
            raise TokenError("token is not valid yet")
        aud = claims.get("aud")
        token_aud = (aud,) if isinstance(aud, str) else tuple(a for a in aud if isinstance(a, str)) \
            if isinstance(aud, list) else ()
        if not set(token_aud) & set(audiences):
            raise TokenError(f"token audiences {list(token_aud)} are not among {list(audiences)}")
        private = claims.get(CLAIMS_KEY)
        if not isinstance(private, dict):
            raise TokenError(f"no {CLAIMS_KEY} claim")
        sa = private.get("serviceaccount") or {}
        namespace, name, uid = private.get("namespace"), sa.get("name"), sa.get("uid")
        if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
            raise TokenError("incomplete serviceaccount claims")
        if claims.get("sub") != f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}":
            raise TokenError("subject does not match the serviceaccount claims")
        pod_claim = private.get("pod")
        pod = BoundPod(str(pod_claim.get("name")), str(pod_claim.get("uid"))) \
            if isinstance(pod_claim, dict) else None
        return TokenClaims(namespace, name, uid, token_aud, exp, int(iat) if isinstance(iat, int) else 0, pod,
                           str(claims.get("jti") or ""))


class ObjectUids(Protocol):
    """The uid of a live object, or None when it does not exist (the authenticator's view of the API)."""

    def uid(self, resource: str, namespace: str, name: str) -> str | None: ...


class ServiceAccountAuthenticator:
    """Authenticates ServiceAccount tokens; answers None for tokens it did not sign (the chain goes on)."""

    def __init__(self, issuer: TokenIssuer, objects: ObjectUids,
                 audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)) -> None:
        self.issuer, self.objects, self.audiences = issuer, objects, audiences
        self._verified: dict[str, TokenClaims] = {}

    def _claims(self, token: str) -> TokenClaims:
        """Verified claims, from the cache when this token was verified before and has not expired since."""
        claims = self._verified.get(token)
        if claims is not None:
            if self.issuer.clock() > claims.expires + LEEWAY_S:
                self._verified.pop(token, None)
                raise TokenError("token has expired")
            return claims
        claims = self.issuer.verify(token, self.audiences)
        if len(self._verified) >= VERIFIED_CACHE_MAX:
            self._verified.clear()  # crude, but bounded; the next use of each token verifies it again
        self._verified[token] = claims
        return claims

    def authenticate(self, token: str) -> UserInfo | None:
        if token not in self._verified and not self.issuer.looks_like_ours(token):
            return None
        try:
            claims = self._claims(token)
            self._check_live(claims)
        except TokenError as exc:
            log.info("service account token refused", extra={"reason": str(exc)})
            return None
        user = service_account_user(claims.namespace, claims.name, claims.uid)
        extra: dict[str, Any] = {EXTRA_CREDENTIAL_ID: [f"JTI={claims.jti}"]} if claims.jti else {}
        if claims.pod is not None:
            extra[EXTRA_POD_NAME] = [claims.pod.name]
            extra[EXTRA_POD_UID] = [claims.pod.uid]
        return UserInfo(user.name, user.groups, user.uid, extra)

    def _check_live(self, claims: TokenClaims) -> None:
        sa_uid = self.objects.uid("serviceaccounts", claims.namespace, claims.name)
        if sa_uid is None:
            raise TokenError(f'serviceaccount "{claims.namespace}/{claims.name}" not found')
        if sa_uid != claims.uid:
            raise TokenError(f'serviceaccount "{claims.namespace}/{claims.name}" was recreated (uid {sa_uid}, '
                             f"token for {claims.uid})")
        if claims.pod is not None:
            pod_uid = self.objects.uid("pods", claims.namespace, claims.pod.name)
            if pod_uid is None:
                raise TokenError(f'pod "{claims.namespace}/{claims.pod.name}" not found')
            if pod_uid != claims.pod.uid:
                raise TokenError(f'pod "{claims.namespace}/{claims.pod.name}" uid {pod_uid} does not match the '
                                 f"token's {claims.pod.uid}")
