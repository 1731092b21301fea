"""Where every component runs: the one place that places the actors of the registry.

Control-plane components (:mod:`minik8s.cluster.components`) are pinned to the head, a node's
components to that node, each by its Ray resource. Everything before placement (the control plane's
processes, a node's join through the API with the join token, its dockerd and raylet) is
:mod:`minik8s.cluster.nodes`' and :mod:`minik8s.cluster.bootstrap`'s; `cli/cluster.py` runs the
steps in order: processes, the API's actors, the nodes, then the other control-plane actors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors import launch
from minik8s.cluster import components as registry
from minik8s.cluster.bootstrap import ControlPlaneOptions, JoinRequest, control_plane_settings, node_settings
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.cluster.nodes import JoinedNode

log = logging.getLogger("minik8s.actors.cluster")
Echo = Callable[[str], None]


# --- control plane --------------------------------------------------------------------------

def control_plane_specs(cfg: ClusterConfig, opts: ControlPlaneOptions) -> tuple[list[launch.ActorSpec],
                                                                                list[launch.ActorSpec]]:
    """Every control-plane component, pinned to the head: the bootstrap ones (the API) first."""
    settings = control_plane_settings(cfg, opts)
    specs = [launch.ActorSpec(c.actor_name(), c.name, cfg.ray_control_plane_resource, settings[c.name])
             for c in registry.control_plane()]
    first = [s for s, c in zip(specs, registry.control_plane(), strict=True) if c.bootstrap]
    return first, [s for s in specs if s not in first]


def place_control_plane(cfg: ClusterConfig, specs: list[launch.ActorSpec], echo: Echo) -> dict[str, dict[str, Any]]:
    """These control-plane actors exist on the head (created if missing, adopted if running) and answer healthy."""
    launch.connect(cfg.ray_address, cfg.ray_namespace, cfg.ray_token_path)
    echo(f"actors: {', '.join(s.name for s in specs)} ...")
    launch.ensure(specs)
    return launch.wait_healthy([s.name for s in specs])


# --- nodes ----------------------------------------------------------------------------------

def node_specs(node: NodeConfig, reply: dict[str, Any], req: JoinRequest | None) -> list[launch.ActorSpec]:
    """Every node component, pinned to the node by its Ray resource."""
    settings = node_settings(node, reply, req)
    return [launch.ActorSpec(c.actor_name(node.name), c.name, node.ray_resource, settings[c.name])
            for c in registry.node_components()]


def place_nodes(cfg: ClusterConfig, joined: list[JoinedNode], echo: Echo) -> dict[str, dict[str, Any]]:
    """Every joined node's actors on its own raylet, all at once, and their health."""
    if not joined:
        return {}
    first = joined[0]  # one Ray cluster: any joined node's raylet attaches this process to it
    launch.connect(first.ray_address, cfg.ray_namespace, first.ray_token_path, node_ip=first.node_ip)
    specs = [spec for j in joined for spec in node_specs(j.node, j.reply, j.req)]
    echo(f"node actors: {', '.join(s.name for s in specs)} ...")
    launch.ensure(specs)
    return launch.wait_healthy([s.name for s in specs])


__all__ = ["control_plane_specs", "node_specs", "place_control_plane", "place_nodes"]
