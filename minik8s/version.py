"""The Kubernetes version minik8s speaks (what `kubectl version` and `get nodes` show)."""

KUBE_VERSION = "v1.32.0-minik8s"
