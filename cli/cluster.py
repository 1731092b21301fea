"""up, down, status, kubeconfig, token, join, node remove: the cluster's life cycle."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from actors import cluster as boot
from minik8s.api.validation import pydantic_causes
from minik8s.client.sdk import Client, config_path
from minik8s.cluster import local
from minik8s.cluster.config import ClusterConfig
from minik8s.errors import BadRequest, NotFound
from minik8s.proxy.proxy import ensure_root_route

DRAIN_TIMEOUT_S = 90.0
POLL_S = 0.5


def _write_client_config(cfg: ClusterConfig) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"server": boot.api_url(cfg), "token": boot.api_token(cfg), "ca": boot.pki(cfg).ca_pem(),
                   "stateDir": str(cfg.state_dir)}, f)
    return path


def _echo_health(states: dict[str, dict[str, Any]]) -> bool:
    ok = True
    for name, state in states.items():
        ok &= bool(state.get("healthy"))
        click.echo(f"  {name:<22}{'healthy' if state.get('healthy') else 'UNHEALTHY'}  "
                   f"{state.get('detail', '')}".rstrip())
    return ok


@click.command()
@click.option("--nodes", type=click.IntRange(1, 50), default=3, show_default=True, help="How many nodes.")
@click.option("--etcd-endpoints", default=None, help="Use an existing etcd cluster: http://a:2379,http://b:2379")
@click.option("--skip-images", is_flag=True, help="Do not build the base images.")
@click.option("--node-monitor-grace-period", type=float, default=40.0, show_default=True,
              help="Seconds without a kubelet heartbeat before a node is NotReady.")
@click.option("--pod-eviction-timeout", type=float, default=300.0, show_default=True,
              help="Seconds a node may stay NotReady before its pods are deleted.")
def up(nodes: int, etcd_endpoints: str | None, skip_images: bool, node_monitor_grace_period: float,
       pod_eviction_timeout: float) -> None:
    """Start (or adopt) a local cluster: etcd, registry, Ray head, the control plane and N nodes.

    Idempotent: a second `up` adopts what runs and starts only what is missing. The control
    plane's settings take effect when its actors are first created.

    \b
    Example:
      minik8s up --nodes 3
    """
    t0 = time.monotonic()
    cfg = ClusterConfig(nodes=nodes)
    opts = boot.ControlPlaneOptions(etcd_endpoints.split(",") if etcd_endpoints else None, skip_images,
                                    node_monitor_grace_period, pod_eviction_timeout)
    states = boot.start_control_plane(cfg, opts, click.echo)
    token = boot.join_token(cfg)
    for i in range(1, nodes + 1):
        req = boot.JoinRequest(name=cfg.node(i).name, server=boot.api_url(cfg), token=token)
        states.update(boot.join_local(cfg, req, click.echo))
    # the user's shell reaches ClusterIPs through node-1, whose proxy rules DNAT them
    ensure_root_route(cfg.service_cidr, cfg.node(1).ip)
    path = _write_client_config(cfg)
    click.echo("actors:")
    ok = _echo_health(states)
    click.echo(f"cluster {'ready' if ok else 'NOT healthy'} in {time.monotonic() - t0:.1f}s; "
               f"API {boot.api_url(cfg)} (client config {path})")
    if not ok:
        raise SystemExit(1)


@click.command()
@click.option("--purge", is_flag=True, help="Also delete all state: etcd data, images, tokens.")
def down(purge: bool) -> None:
    """Stop everything `up` started and remove every netns, link and mount it made.

    \b
    Example:
      minik8s down --purge
    """
    cfg = ClusterConfig()
    local.down(cfg, purge=purge)
    if purge:
        config_path().unlink(missing_ok=True)
    click.echo("cluster stopped" + (" and purged" if purge else ""))


@click.command()
def status() -> None:
    """Each component and whether it is healthy (exit 1 if any is not).

    \b
    Example:
      minik8s status
    """
    from actors import launch

    cfg = ClusterConfig()
    ok = True
    rows = local.status(cfg)
    for row in rows:
        ok &= row.healthy
        click.echo(f"  {row.component:<22}{'healthy' if row.healthy else 'UNHEALTHY'}  {row.detail}".rstrip())
    if any(r.component == "ray-head" and r.healthy for r in rows):
        launch.connect(cfg.ray_address, cfg.ray_namespace)
        names = ["apiserver", "scheduler", "controller-manager", "gateway"]
        names += [a for n in local.known_nodes(cfg) for a in boot.node_actor_names(n.name)]
        ok &= _echo_health({n: launch.health(n) for n in names})
    if not ok:
        raise SystemExit(1)


@click.command()
def kubeconfig() -> None:
    """Print a kubeconfig for kubectl and the kubernetes Python client.

    \b
    Example:
      minik8s kubeconfig > kc && kubectl --kubeconfig kc get pods
    """
    if not config_path().exists():
        raise BadRequest("no cluster: run `minik8s up` first")
    cfg_file = json.loads(config_path().read_text())
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "minik8s",
        "clusters": [{"name": "minik8s", "cluster": {
            "server": cfg_file["server"],
            "certificate-authority-data": base64.b64encode(cfg_file["ca"].encode()).decode()}}],
        "users": [{"name": "minik8s-admin", "user": {"token": cfg_file["token"]}}],
        "contexts": [{"name": "minik8s", "context": {"cluster": "minik8s", "user": "minik8s-admin",
                                                       "namespace": "default"}}],
    }
    click.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())


@click.command()
def token() -> None:
    """Print the join token nodes present to join this cluster (like k3s's node-token).

    \b
    Example:
      minik8s token
    """
    cfg = ClusterConfig()
    if not (cfg.state_dir / boot.TOKEN_FILE).exists():
        raise BadRequest("no cluster: run `minik8s up` first")
    click.echo(boot.join_token(cfg))


class NodeJoinConfig(BaseModel):
    """The file `minik8s join --config` reads; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")
    apiVersion: str = "minik8s.io/v1"
    kind: str = "NodeJoinConfig"
    name: str
    server: str
    token: str
    labels: dict[str, str] = {}
    taints: list[dict[str, str]] = []
    resources: dict[str, str | int] = {}
    address: str | None = None


def load_join_config(path: Path) -> boot.JoinRequest:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BadRequest(f"{path}: cannot read the join config: {str(exc).splitlines()[0]}") from None
    try:
        conf = NodeJoinConfig.model_validate(raw)
    except ValidationError as exc:
        field, message = pydantic_causes(exc)[0]
        raise BadRequest(f"{path}: {field}: {message}") from None
    if conf.kind != "NodeJoinConfig":
        raise BadRequest(f'{path}: kind must be NodeJoinConfig, got "{conf.kind}"')
    return boot.JoinRequest(conf.name, conf.server, conf.token, conf.labels, list(conf.taints),
                            dict(conf.resources), conf.address)


@click.command()
@click.option("--config", "config_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Node join config: name, server, token, labels, taints, resources, address.")
def join(config_file: Path) -> None:
    """Join a node to a cluster. On one machine this makes the node's netns, dockerd and raylet.

    \b
    Example (node.yaml):
      apiVersion: minik8s.io/v1
      kind: NodeJoinConfig
      name: node-4
      server: https://10.200.0.1:6443
      token: K10...   # from `minik8s token`
      labels: {disk: ssd}
      taints: [{key: dedicated, value: batch, effect: NoSchedule}]
      resources: {cpu: "2", memory: 2Gi, pods: 50}
    \b
      minik8s join --config node.yaml
    """
    req = load_join_config(config_file)
    cfg = ClusterConfig()
    ok = _echo_health(boot.join_local(cfg, req, click.echo))
    click.echo(f"node {req.name} {'joined' if ok else 'joined but NOT healthy'}")
    if not ok:
        raise SystemExit(1)


@click.group()
def node() -> None:
    """Node operations."""


@node.command(name="remove")
@click.argument("name")
def node_remove(name: str) -> None:
    """Drain a node (cordon, delete its pods), stop it, and delete its Node object.

    \b
    Example:
      minik8s node remove node-3
    """
    from actors import launch

    client = Client.from_config()
    cfg = ClusterConfig()
    client.get("Node", name, None)
    client.patch("Node", name, {"spec": {"unschedulable": True}}, None)
    click.echo(f"node/{name} cordoned")
    pods = client.list("Pod", field_selector=f"spec.nodeName={name}").items
    for pod in pods:
        client.delete("Pod", pod.metadata.name, pod.metadata.namespace)
        click.echo(f"evicting pod {pod.metadata.namespace}/{pod.metadata.name}")
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while client.list("Pod", field_selector=f"spec.nodeName={name}").items and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for pod in client.list("Pod", field_selector=f"spec.nodeName={name}").items:
        client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
    launch.connect(cfg.ray_address, cfg.ray_namespace)
    launch.kill(boot.node_actor_names(name))
    if boot.LOCAL_NODE_NAME.match(name):
        local.stop_node(cfg, boot.local_node(cfg, name))
    try:
        client.delete("Node", name, None)
    except NotFound:
        pass
    click.echo(f"node/{name} removed")


COMMANDS = [up, down, status, kubeconfig, token, join, node]
