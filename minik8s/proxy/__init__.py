"""The service proxy: each node's ClusterIP/NodePort data plane, in nftables.

One table, ``ip minik8s-proxy``, owned by the per-node :class:`~minik8s.proxy.proxy.Proxy`
(no other table is read or flushed). Every sync is one atomic ``nft -f`` transaction that
touches only the Services that changed: their map elements and their chains. The kernel here
has no IPVS, so nftables (numgen random / jhash + verdict maps + DNAT) is the only backend.

- :mod:`minik8s.proxy.rules`: pure rendering (Service + Endpoints -> chains and map elements)
  and the per-service diff that becomes the transaction text;
- :mod:`minik8s.proxy.nft`: running ``nft -f`` in a network namespace;
- :mod:`minik8s.proxy.proxy`: the component (informers on Services and Endpoints, a sync loop).
"""
