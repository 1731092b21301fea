"""The pod network across nodes: a flannel-style VXLAN overlay, one agent per node.

What this package owns, per node netns: the VXLAN device ``mk8s.vx`` (VNI 1, UDP 8472,
address = the ``.0`` of the node's pod subnet, MAC derived from the node name), one route +
permanent ARP entry + permanent FDB entry per other node, the nftables table
``ip minik8s-nat`` (masquerade of pod traffic leaving the cluster pod CIDR, forward accept),
and ``ip_forward``.  In the root netns it owns the routes ``<node podCIDR> via <node IP>``.

- :mod:`minik8s.network.plan`: pure desired-state and diff logic (no netlink).
- :mod:`minik8s.network.nft`: the nftables ruleset text and its atomic application.
- :mod:`minik8s.network.vxlan`: the netlink applier (device, peers, host routes, setup/teardown).
- :mod:`minik8s.network.agent`: :class:`NetworkAgent`, the per-node component reconciling peers
  from the Node objects in the API.
- :mod:`minik8s.network.testbed`: a throwaway two-node topology (no dockerd) shared by the
  integration test and ``benchmarks/pod_network.py``.
"""
