"""NetworkPolicy enforcement: nftables in each pod's own network namespace, kept in sync per node.

- :mod:`minik8s.netpol.rules`: the semantics, pure: policies + pods + namespaces (+ Services and their
  Endpoints) -> the pod's `inet minik8s-netpol` table text, and a one-flow evaluator.
- :mod:`minik8s.netpol.agent`: :class:`PolicyAgent`, run inside each kubelet under its own identity
  (`system:minik8s-netpol`), writing the tables at sandbox start and on every change.
"""
