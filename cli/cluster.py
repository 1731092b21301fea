"""up, down, status, kubeconfig: the local cluster's life cycle."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import click
import yaml

from minik8s.client.sdk import config_path
from minik8s.cluster import local
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.pki import Pki, ensure_pki

log = logging.getLogger("minik8s.cli")

TOKEN_FILE = "token"
TOKEN_BYTES = 32
KUBELET_PORT = 10250
API_READY_TIMEOUT_S = 60.0


def _token(cfg: ClusterConfig) -> str:
    """The API bearer token: made at the first `up`, mode 0600 in the state dir."""
    path = cfg.state_dir / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(TOKEN_BYTES))
    return path.read_text().strip()


def _api_url(cfg: ClusterConfig, host: str = "127.0.0.1") -> str:
    return f"https://{host}:{cfg.api_port}"


def _pki(cfg: ClusterConfig) -> Pki:
    return ensure_pki(cfg.state_dir / "pki", ["127.0.0.1", cfg.head_ip], ["localhost", "minik8s-apiserver"])


def _write_client_config(cfg: ClusterConfig, token: str, ca: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"server": _api_url(cfg), "token": token, "ca": ca, "stateDir": str(cfg.state_dir)}, f)
    return path


def kubelet_config(cfg: ClusterConfig, node: NodeConfig, token: str) -> dict[str, Any]:
    return {"node_name": node.name, "node_ip": node.ip, "pod_cidr": node.pod_cidr,
            "docker_url": node.docker_url, "pods_dir": str(node.dir / "pods"), "api_token": token,
            "server_port": KUBELET_PORT, "image_registry": cfg.registry_addr}


def actor_specs(cfg: ClusterConfig, token: str, pki: Pki, nodes: list[NodeConfig]) -> tuple[list[Any], list[Any]]:
    from actors.launch import ActorSpec, ApiServerActor, KubeletActor, SchedulerActor

    api_cfg = {"etcd_endpoints": local.etcd_endpoints(cfg), "token": token, "hosts": ["127.0.0.1", cfg.head_ip],
               "port": cfg.api_port, "tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    server, ca = _api_url(cfg, cfg.head_ip), pki.ca_pem()
    control = [ActorSpec("apiserver", ApiServerActor, cfg.ray_control_plane_resource, (api_cfg,))]
    rest = [ActorSpec("scheduler", SchedulerActor, cfg.ray_control_plane_resource, (server, token, ca))]
    rest += [ActorSpec(f"kubelet-{n.name}", KubeletActor, n.ray_resource,
                       (kubelet_config(cfg, n, token), server, token, ca)) for n in nodes]
    return control, rest


def _echo_health(states: dict[str, dict[str, Any]]) -> bool:
    ok = True
    for name, state in states.items():
        ok &= bool(state.get("healthy"))
        click.echo(f"  {name:<22}{'healthy' if state.get('healthy') else 'UNHEALTHY'}  "
                   f"{state.get('detail', '')}".rstrip())
    return ok


@click.command()
@click.option("--nodes", type=click.IntRange(1, 50), default=1, show_default=True, help="How many nodes.")
@click.option("--etcd-endpoints", default=None, help="Use an existing etcd cluster: http://a:2379,http://b:2379")
@click.option("--skip-images", is_flag=True, help="Do not build the base images.")
def up(nodes: int, etcd_endpoints: str | None, skip_images: bool) -> None:
    """Start (or adopt) a local cluster: etcd, registry, Ray head, N nodes, and the actors.

    Idempotent: a second `up` adopts what runs and starts only what is missing.

    \b
    Example:
      minik8s up --nodes 1
    """
    from actors import launch

    t0 = time.monotonic()
    cfg = ClusterConfig(nodes=nodes)
    token = _token(cfg)
    pki = _pki(cfg)
    click.echo("control plane: etcd, registry, image builder, Ray head ...")
    local.start_control_plane(cfg, etcd_endpoints.split(",") if etcd_endpoints else None)
    if not skip_images:
        import docker

        from minik8s.images.base import ensure_base_images

        click.echo("base images ...")
        builder = docker.DockerClient(base_url=f"unix://{cfg.builder_socket}")
        ensure_base_images(builder, cfg.registry_addr, cfg.state_dir / "images")
    node_cfgs = [cfg.node(i) for i in range(1, nodes + 1)]
    for node in node_cfgs:
        click.echo(f"{node.name}: netns {node.netns}, {node.ip}, dockerd, raylet ...")
        local.start_node(cfg, node)
    launch.connect(cfg.ray_address, cfg.ray_namespace)
    control, rest = actor_specs(cfg, token, pki, node_cfgs)
    launch.ensure(control)
    states = launch.wait_healthy([s.name for s in control])
    launch.ensure(rest)
    states.update(launch.wait_healthy([s.name for s in rest]))
    path = _write_client_config(cfg, token, pki.ca_pem())
    click.echo("actors:")
    ok = _echo_health(states)
    click.echo(f"cluster {'ready' if ok else 'NOT healthy'} in {time.monotonic() - t0:.1f}s; "
               f"API {_api_url(cfg)} (client config {path})")
    if not ok:
        raise SystemExit(1)


@click.command()
@click.option("--purge", is_flag=True, help="Also delete all state: etcd data, images, token.")
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
    for row in local.status(cfg):
        ok &= row.healthy
        click.echo(f"  {row.component:<22}{'healthy' if row.healthy else 'UNHEALTHY'}  {row.detail}".rstrip())
    nodes = local.known_nodes(cfg)
    if any(r.component == "ray-head" and r.healthy for r in local.status(cfg)):
        launch.connect(cfg.ray_address, cfg.ray_namespace)
        ok &= _echo_health({n: launch.health(n) for n in
                            ["apiserver", "scheduler", *[f"kubelet-{n.name}" for n in nodes]]})
    if not ok:
        raise SystemExit(1)


@click.command()
def kubeconfig() -> None:
    """Print a kubeconfig for kubectl and the kubernetes Python client.

    \b
    Example:
      minik8s kubeconfig > kc && kubectl --kubeconfig kc get pods
    """
    cfg_file = json.loads(config_path().read_text()) if config_path().exists() else None
    if not cfg_file:
        raise click.ClickException("no cluster: run `minik8s up` first")
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


COMMANDS = [up, down, status, kubeconfig]
