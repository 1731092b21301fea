"""The node's presence in the API: its Node object (registration, status) and its Lease."""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from minik8s.api.types import Lease, LeaseSpec, Node, NodeSpec, ObjectMeta
from minik8s.errors import Conflict, NotFound
from minik8s.kubelet.node import ARCHITECTURES, Capacity, node_status

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
RUNTIME_SCHEME = "docker://"
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"


def now_seconds() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeReporter:
    def __init__(
        self,
        client: Any,
        docker_client: docker.DockerClient,
        *,
        node_name: str,
        node_ip: str,
        pod_cidr: str | None,
        capacity: Capacity,
        port: int,
        pods_dir: Path,
        lease_duration_seconds: int,
        hostname: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.docker = docker_client
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.capacity = capacity
        self.port = port
        self.pods_dir = pods_dir
        self.lease_duration_seconds = lease_duration_seconds
        self.hostname = hostname or node_name
        self.labels = dict(labels or {})

    def _runtime(self) -> tuple[bool, str, str]:
        """(runtime up?, error, containerRuntimeVersion)."""
        try:
            version = str(self.docker.version().get("Version", "unknown"))
            return True, "", RUNTIME_SCHEME + version
        except (docker.errors.DockerException, OSError) as exc:
            return False, str(exc), RUNTIME_SCHEME + "unknown"

    def _new_node(self) -> Node:
        labels = {
            HOSTNAME_LABEL: self.node_name,
            OS_LABEL: "linux",
            ARCH_LABEL: ARCHITECTURES.get(_machine(), _machine()),
            **self.labels,
        }
        spec = NodeSpec(podCIDR=self.pod_cidr, podCIDRs=[self.pod_cidr] if self.pod_cidr else None)
        return Node(
            apiVersion="v1", kind="Node", metadata=ObjectMeta(name=self.node_name, labels=labels), spec=spec
        )

    def register(self) -> Node:
        """Create the Node if missing (or fix its podCIDR), then write its status."""
        try:
            node: Node = self.client.get("Node", self.node_name, None)
        except NotFound:
            node = self.client.create(self._new_node())
            log.info("registered node", extra={"node": self.node_name, "node_ip": self.node_ip})
        wanted = self._new_node().metadata.labels or {}
        current = node.metadata.labels or {}
        if any(key not in current for key in wanted):  # registered by `join`: add what the kubelet knows
            labels = {**wanted, **current}
            node = self.client.patch("Node", self.node_name, {"metadata": {"labels": labels}}, None)
        if self.pod_cidr and node.spec.podCIDR != self.pod_cidr:
            spec = node.spec.model_copy(update={"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]})
            node = self.client.update(node.model_copy(update={"spec": spec}))
        return self.update_status(node)

    def update_status(self, node: Node | None = None) -> Node:
        if node is None:
            node = self.client.get("Node", self.node_name, None)
        ok, error, version = self._runtime()
        status = node_status(
            node_ip=self.node_ip,
            hostname=self.hostname,
            capacity=self.capacity,
            port=self.port,
            runtime_version=version,
            runtime_ok=ok,
            runtime_error=error,
            pods_dir=self.pods_dir,
            now=now_seconds(),
            previous=node.status,
        )
        try:
            updated: Node = self.client.update_status(node.model_copy(update={"status": status}))
        except Conflict:
            fresh = self.client.get("Node", self.node_name, None)
            updated = self.client.update_status(fresh.model_copy(update={"status": status}))
        return updated

    def renew_lease(self) -> None:
        stamp = now_micro()
        try:
            lease: Lease = self.client.get("Lease", self.node_name, LEASE_NAMESPACE)
        except NotFound:
            self.client.create(
                Lease(
                    apiVersion="coordination.k8s.io/v1",
                    kind="Lease",
                    metadata=ObjectMeta(name=self.node_name, namespace=LEASE_NAMESPACE),
                    spec=LeaseSpec(
                        holderIdentity=self.node_name,
                        leaseDurationSeconds=self.lease_duration_seconds,
                        acquireTime=stamp,
                        renewTime=stamp,
                        leaseTransitions=0,
                    ),
                )
            )
            return
        spec = lease.spec.model_copy(
            update={
                "renewTime": stamp,
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": self.lease_duration_seconds,
            }
        )
        self.client.update(lease.model_copy(update={"spec": spec}))

    def heartbeat(self) -> None:
        """Renew the Lease and refresh the Node status; each failure is logged, neither blocks the other."""
        started = time.monotonic()
        try:
            self.renew_lease()
        except Exception as exc:  # the API may be briefly down; the next beat retries
            log.warning("lease renewal failed", extra={"node": self.node_name, "error": str(exc)})
        try:
            self.update_status()
        except NotFound:
            self.register()
        except Exception as exc:
            log.warning("node status update failed", extra={"node": self.node_name, "error": str(exc)})
        log.debug("heartbeat", extra={"node": self.node_name, "seconds": time.monotonic() - started})


def _machine() -> str:
    return os.uname().machine


def default_hostname() -> str:
    return socket.gethostname()
