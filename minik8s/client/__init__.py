"""The client side of the API: the SDK, and the informer and work queue every controller reuses."""

from minik8s.client.informer import Informer, InformerFactory
from minik8s.client.sdk import Client, ObjectList, WatchEvent
from minik8s.client.workqueue import WorkQueue

__all__ = ["Client", "Informer", "InformerFactory", "ObjectList", "WatchEvent", "WorkQueue"]
