"""The API server: Kubernetes REST over the etcd store (the only component that touches etcd)."""
