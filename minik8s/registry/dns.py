"""The DNS kind: no two objects claim the same host + path (checked under one lock with the write)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from minik8s.api.strategy import Obj, ServerView, Strategy
from minik8s.apiserver.dnshosts import HostClaims


class DNSStrategy(Strategy):
    def __init__(self, server: ServerView) -> None:
        super().__init__(server)
        self.claims = HostClaims(lambda: server.list_all("DNS"))

    @contextmanager
    def write_guard(self, obj: Obj, old: Obj | None) -> Iterator[None]:
        with self.claims.lock:
            self.claims.check(obj)
            yield
