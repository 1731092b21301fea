"""Client certificates: who a TLS peer is, for servers run by uvicorn (the API server, the kubelet).

uvicorn hands an ASGI app no trace of the peer's certificate, so the protocol classes here (given to
uvicorn as `http=` and `ws=`) read it from the connection once, after the handshake, and put it into
every request's scope as the ASGI TLS extension (`scope["extensions"]["tls"]`), plus the parsed
subject. The TLS server must ask for certificates (`ssl.CERT_OPTIONAL`) and check them against the
cluster CA: a certificate that does not chain to it ends the handshake, so one in the scope is
always verified. Kubernetes' x509 authenticator reads it the same way: the user is the subject's
common name (CN), the groups its organizations (O).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from minik8s.auth.user import AUTHENTICATED, UserInfo

TLS_EXTENSION = "tls"
SUBJECT_KEY = "minik8s.subject"  # inside the TLS extension: ((field, value), ...) of the verified peer


def peer_subject(transport: asyncio.BaseTransport) -> tuple[tuple[str, str], ...] | None:
    """The verified client certificate's subject fields, or None (no TLS, or no certificate sent)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    return tuple((k, v) for rdn in cert.get("subject", ()) for k, v in rdn)


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection (None when it is not TLS)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    subject = peer_subject(transport)
    name = ",".join(f"{_SHORT.get(k, k)}={v}" for k, v in reversed(subject)) if subject else None
    return {"client_cert_name": name, "client_cert_error": None, "tls_version": None,
            "cipher_suite": None, SUBJECT_KEY: subject}


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}


class _WithTls:
    """The app, with the connection's TLS extension added to each scope."""

    def __init__(self, app: Any, tls: dict[str, Any]) -> None:
        self.app, self.tls = app, tls

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}
        extensions[TLS_EXTENSION] = self.tls
        await self.app(scope, receive, send)


class PeerCertMixin:
    """For a uvicorn protocol class: after the handshake, wrap this connection's app so that every
    request on it carries the TLS extension (uvicorn calls `self.app` per request)."""

    app: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        tls = tls_extension(transport)
        if tls is not None:
            self.app = _WithTls(self.app, tls)


class PeerCertHttpProtocol(PeerCertMixin, HttpToolsProtocol):
    pass


class PeerCertWebSocketProtocol(PeerCertMixin, WebSocketsSansIOProtocol):
    pass


def subject_of(scope: MutableMapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    tls = (scope.get("extensions") or {}).get(TLS_EXTENSION) or {}
    subject: tuple[tuple[str, str], ...] | None = tls.get(SUBJECT_KEY)
    return subject


def user_of_scope(scope: MutableMapping[str, Any]) -> UserInfo | None:
    """The user a verified client certificate names: CN the user, each O a group (None: no certificate)."""
    subject = subject_of(scope)
    if not subject:
        return None
    names = [v for k, v in subject if k == "commonName"]
    if len(names) != 1 or not names[0]:
        return None
    groups = tuple(dict.fromkeys([*(v for k, v in subject if k == "organizationName"), AUTHENTICATED]))
    return UserInfo(names[0], groups)


def client_context(ca_pem: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A TLS client context trusting only the cluster CA, presenting `cert` when given."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx
