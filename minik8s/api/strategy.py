"""What a kind does beyond being stored: Kubernetes' `pkg/registry/<group>/<kind>/strategy.go` as one object.

The generic store (`minik8s.apiserver.resources.Resources`) never names a kind. It calls the kind's
strategy at fixed points of every write:

    create: validate -> prepare_for_create -> admission -> (under `write_guard`) store -> after_create
    update: validate -> validate_update -> prepare_for_update -> admission -> (under `write_guard`) store
    delete: `delete` (None: delete now) -> the object is gone, or marked for a graceful delete
            (or, while it has finalizers, marked deleting; `finalize` when the last one is removed)

A strategy is made once per API server (`factory(server)`), so it may hold per-server state such as an
allocator and its lock. `ServerView` is what a strategy may use of the server: reads and the raw store.
Subresources beyond `status` are served by the handlers named in the kind's table entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from minik8s.api.validation import Causes

if TYPE_CHECKING:
    from minik8s.api.kinds import KindInfo
    from minik8s.store import EtcdStore

Obj = dict[str, Any]


@dataclass(frozen=True)
class NetworkConfig:
    """The cluster's address plan, allocated from by the Node and Service strategies."""

    pod_cidr: str = "10.244.0.0/16"  # cluster pod network; each Node gets a /node_cidr_prefix of it
    node_cidr_prefix: int = 24
    service_cidr: str = "10.96.0.0/16"  # ClusterIPs are allocated from it


class ServerView(Protocol):
    """The parts of the API server's resource layer a strategy may use."""

    store: EtcdStore
    network: NetworkConfig

    def get(self, info: KindInfo, namespace: str | None, name: str) -> Obj: ...

    def list_all(self, kind: str, namespace: str | None = None) -> list[Obj]: ...

    def namespaced_kinds(self) -> list[KindInfo]: ...

    def delete_now(self, info: KindInfo, current: Obj) -> Obj: ...


class Strategy:
    """The default: no defaults, no extra rules, delete at once. Kinds override what they need."""

    def __init__(self, server: ServerView) -> None:
        self.server = server

    def prepare_for_create(self, obj: Obj) -> None:
        """Defaults and server-owned fields of a new object (already validated, in wire form)."""

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Defaults of an updated object; by default the same as on create."""
        self.prepare_for_create(new)

    def validate_update(self, new: Obj, old: Obj) -> Causes:
        """Rules about the change itself (immutable fields), as (field path, message) pairs."""
        return []

    @contextlib.contextmanager
    def write_guard(self, obj: Obj, old: Obj | None) -> Iterator[None]:
        """Held around the store write: allocations and cross-object checks go here, under their lock.
        Also entered (without a write) for a dry run, so a dry run reports the same conflicts."""
        yield

    def after_create(self, key: str, created: Obj) -> None:
        """Called with the stored object after a successful create."""

    def after_write(self, key: str) -> None:
        """Called before any update or delete of an existing object is written."""

    def delete(self, info: KindInfo, current: Obj, grace: int | None) -> Obj:
        """Delete the object (or start its graceful deletion); returns what the client sees."""
        return self.server.delete_now(info, current)

    def finalize(self, info: KindInfo, obj: Obj) -> Obj:
        """Called when an object marked deleting has lost its last finalizer: by default it goes now."""
        return self.server.delete_now(info, obj)


StrategyFactory = Callable[[ServerView], Strategy]


def defaults_only(defaulter: Callable[[Obj], None]) -> StrategyFactory:
    """A strategy whose only job is to fill defaults on create and update."""

    class _Defaults(Strategy):
        def prepare_for_create(self, obj: Obj) -> None:
            defaulter(obj)

    return _Defaults
