"""Cluster DNS: Service and DNS-object records, served over UDP and TCP from a pushed snapshot.

`records` builds the snapshot and answers questions, `server` speaks the protocol, `component`
keeps the snapshot in step with the API through informers.
"""

from minik8s.dns.component import ClusterDns
from minik8s.dns.records import Snapshot, build_snapshot
from minik8s.dns.server import DnsConfig, DnsServer

__all__ = ["ClusterDns", "DnsConfig", "DnsServer", "Snapshot", "build_snapshot"]
