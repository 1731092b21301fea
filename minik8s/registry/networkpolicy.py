"""NetworkPolicy (networking.k8s.io/v1): Kubernetes' defaults on every write (policyTypes, port protocol)."""

from __future__ import annotations

from minik8s.api.networkpolicy import default_network_policy
from minik8s.api.strategy import defaults_only

NetworkPolicyStrategy = defaults_only(default_network_policy)
