"""Services: defaults, and ClusterIP/NodePort allocation under one lock around the store write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from minik8s.api.services import service_defaults
from minik8s.api.strategy import Obj, ServerView, Strategy
from minik8s.apiserver.services import ServiceAllocator


class ServiceStrategy(Strategy):
    def __init__(self, server: ServerView) -> None:
        super().__init__(server)
        # ClusterIPs and NodePorts, derived from the stored Services under the allocator's lock
        self.allocator = ServiceAllocator(server.network.service_cidr, lambda: server.list_all("Service"))

    def prepare_for_create(self, obj: Obj) -> None:
        service_defaults(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if "spec" in new:
            service_defaults(new)

    @contextmanager
    def write_guard(self, obj: Obj, old: Obj | None) -> Iterator[None]:
        with self.allocator.lock:
            self.allocator.allocate(obj, old)
            yield
