"""Authenticators: a bearer token in, a `UserInfo` (or None: not mine) out.

`TokenAuthenticator` is kube-apiserver's static token file (`--token-auth-file`): one line per
credential, `token,user,uid,"group1,group2"`. The admin kubeconfig and every control-plane component
have their own line. Other authenticators (ServiceAccount JWTs, node credentials) join the chain.
"""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from minik8s.auth.user import AUTHENTICATED, UserInfo


class Authenticator(Protocol):
    def authenticate(self, token: str) -> UserInfo | None:
        """The user this token proves, or None when this authenticator does not know it."""


class TokenAuthenticator:
    """Static tokens, compared in constant time."""

    def __init__(self, entries: dict[str, UserInfo] | None = None) -> None:
        self.entries = dict(entries or {})

    def add(self, token: str, user: UserInfo) -> None:
        self.entries[token] = user

    def authenticate(self, token: str) -> UserInfo | None:
        for known, user in self.entries.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None

    @classmethod
    def parse(cls, text: str) -> TokenAuthenticator:
        """The token-file format: `token,user,uid,"g1,g2"` per line; `#` starts a comment."""
        out = cls()
        for row in csv.reader(io.StringIO(text)):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"token file: a line needs at least a token and a user, got {len(row)} field(s)")
            token, name = row[0].strip(), row[1].strip()
            uid = row[2].strip() if len(row) > 2 else ""
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            out.add(token, UserInfo(name, tuple(dict.fromkeys((*groups, AUTHENTICATED))), uid))
        return out

    @classmethod
    def load(cls, path: str | Path) -> TokenAuthenticator:
        return cls.parse(Path(path).read_text())

    def dump(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for token, user in self.entries.items():
            writer.writerow([token, user.name, user.uid, ",".join(g for g in user.groups if g != AUTHENTICATED)])
        return buf.getvalue()


class AuthenticatorChain:
    """First authenticator that knows the token wins (kube-apiserver's union authenticator)."""

    def __init__(self, authenticators: Iterable[Authenticator] = ()) -> None:
        self.authenticators = list(authenticators)

    def authenticate(self, token: str) -> UserInfo | None:
        if not token:
            return None
        for a in self.authenticators:
            user = a.authenticate(token)
            if user is not None:
                return user
        return None
