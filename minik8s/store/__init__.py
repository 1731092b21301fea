"""Durable state: the etcd-backed store. Only the API server uses it.

Objects live at `/registry/{resource}/{namespace}/{name}` (cluster-scoped kinds without the
namespace segment); an object's `metadata.resourceVersion` is its etcd mod revision.
"""

from minik8s.store.etcd import EtcdStore, StoreEvent

__all__ = ["EtcdStore", "StoreEvent"]
