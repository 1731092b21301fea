"""Per-kind strategies (Kubernetes' `pkg/registry`): defaults, update rules, allocation and delete behaviour.

Each module owns the rules of one kind; the kinds table (`minik8s.api.kinds`) names the strategy beside
the kind's entry, and the generic store in `minik8s.apiserver.resources` calls it.
"""
