"""Resource metrics: the metrics.k8s.io/v1beta1 wire shapes, the API server's in-memory store of the
latest window per node, and formatting for `top`.

The kubelet samples (``minik8s.kubelet.metrics``) and pushes; the API server keeps only the newest
window per node in memory (metrics are not durable state, as in Kubernetes' metrics-server) and serves
PodMetrics/NodeMetrics; the HPA controller and `minik8s top` read them.
"""

from minik8s.metrics.store import MetricsStore
from minik8s.metrics.types import (
    GROUP,
    GROUP_VERSION,
    REPORT_PATH,
    VERSION,
    cpu_nanocores,
    format_cpu_usage,
    format_memory_usage,
    memory_usage_bytes,
)

__all__ = ["GROUP", "GROUP_VERSION", "REPORT_PATH", "VERSION", "MetricsStore", "cpu_nanocores",
           "format_cpu_usage", "format_memory_usage", "memory_usage_bytes"]
