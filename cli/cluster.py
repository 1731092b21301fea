"""up, down, status, kubeconfig, token, join, leave, node remove: the cluster's life cycle."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from cli.drain import DRAIN_TIMEOUT_S, drain
from minik8s.api.validation import pydantic_causes
from minik8s.client.sdk import Client, config_path
from minik8s.cluster import bootstrap, etcd_choice, host, local
from minik8s.cluster import components as registry
from minik8s.cluster import nodes as node_setup
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.procs import pss_bytes
from minik8s.errors import BadRequest, NotFound
from minik8s.proxy.proxy import ensure_root_route
from minik8s.store.failover import EtcdTLS, normalize_endpoints


def _write_client_config(cfg: ClusterConfig) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"server": bootstrap.api_url(cfg), "token": bootstrap.api_token(cfg),
                   "ca": bootstrap.pki(cfg).ca_pem(), "stateDir": str(cfg.state_dir)}, f)
    return path


def _echo_health(states: dict[str, dict[str, Any]]) -> bool:
    ok = True
    for name, state in states.items():
        ok &= bool(state.get("healthy"))
        click.echo(f"  {name:<22}{'healthy' if state.get('healthy') else 'UNHEALTHY'}  "
                   f"{state.get('detail', '')}".rstrip())
    return ok


def _absolute(path: str | None) -> str | None:
    """A file named on the command line, as the API server (another process, another cwd) must find it."""
    return str(Path(path).expanduser().resolve()) if path else None


def _cluster_config(**fields: Any) -> ClusterConfig:
    try:
        return ClusterConfig(**fields)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


#: what everything `minik8s up` starts may use together (PSS, containers not counted)
FOOTPRINT_BUDGET_BYTES = 2_000_000_000

@click.command()
@click.option("--nodes", type=click.IntRange(0, 50), default=3, show_default=True,
              help="How many local (netns) nodes; 0 for a control-plane-only head.")
@click.option("--advertise-address", default=None, metavar="IP",
              help="This machine's IP that other machines reach the API, Ray head, registry and DNS at "
                   "(real machines; kept for later commands).")
@click.option("--ray-autoscaling-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="For `ray start --head --autoscaling-config` (`ray up` leaves ~/ray_bootstrap_config.yaml).")
@click.option("--etcd-endpoints", default=None, metavar="URLS",
              help="Keep the cluster's objects in an existing etcd cluster instead of a managed etcd: "
                   "https://a:2379,https://b:2379,https://c:2379 (http:// only to loopback). Recorded at the first "
                   "`up`: a later `up` keeps using it without the flag and refuses other endpoints; `down` never "
                   "stops it, and `down --purge` forgets it (leaving its keys alone).")
@click.option("--etcd-cafile", default=None, metavar="FILE",
              help="CA of the https:// etcd members' serving certificates [default: the cluster CA].")
@click.option("--etcd-certfile", default=None, metavar="FILE",
              help="Client certificate toward https:// etcd members [default: <state>/pki/apiserver-etcd-client.crt, "
                   "issued by the cluster CA: start the members with --client-cert-auth "
                   "--trusted-ca-file <state>/pki/ca.crt].")
@click.option("--etcd-keyfile", default=None, metavar="FILE", help="The client certificate's key.")
@click.option("--skip-images", is_flag=True, help="Do not build the base images.")
@click.option("--node-monitor-grace-period", type=float, default=40.0, show_default=True,
              help="Seconds without a kubelet heartbeat before a node is NotReady.")
@click.option("--pod-eviction-timeout", type=float, default=300.0, show_default=True,
              help="Seconds a pod stays on an unreachable node (its kubelet silent) before it is evicted "
                   "(the tolerationSeconds new pods get for node.kubernetes.io/unreachable).")
@click.option("--default-not-ready-toleration-seconds", "not_ready_toleration", type=float, default=300.0,
              show_default=True,
              help="Seconds a pod stays on a node whose kubelet reports NotReady (e.g. its container runtime is "
                   "down) before it is evicted (the tolerationSeconds new pods get for node.kubernetes.io/not-ready).")
def up(nodes: int, advertise_address: str | None, ray_autoscaling_config: Path | None, etcd_endpoints: str | None,
       etcd_cafile: str | None, etcd_certfile: str | None, etcd_keyfile: str | None, skip_images: bool,
       node_monitor_grace_period: float, pod_eviction_timeout: float, not_ready_toleration: float) -> None:
    """Start (or adopt) a local cluster: etcd, registry, Ray head, the control plane and N nodes.

    Idempotent: a second `up` adopts what runs and starts only what is missing. The control
    plane's settings (the advertised address too) take effect when its actors are first created.

    \b
    Examples:
      minik8s up --nodes 3
      minik8s up --nodes 0 --advertise-address 192.168.1.10   # head of real machines
      minik8s up --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379
    """
    t0 = time.monotonic()

    def echo(line: str) -> None:  # each step with the time it started: where `up` spends its time
        click.echo(f"[{time.monotonic() - t0:5.1f}s] {line}")

    external_etcd = normalize_endpoints(etcd_endpoints) if etcd_endpoints is not None else None
    etcd_tls = EtcdTLS(*(_absolute(f) for f in (etcd_cafile, etcd_certfile, etcd_keyfile)))
    autoscaling = ray_autoscaling_config.expanduser().resolve() if ray_autoscaling_config else None
    cfg = _cluster_config(nodes=nodes, advertise_address=advertise_address, ray_autoscaling_config=autoscaling)
    etcd_choice.choose(cfg, external_etcd)  # refuses a change of etcd before anything changes
    if advertise_address is not None:
        if not local.head_ip_is_local(cfg):
            raise BadRequest(f"--advertise-address {cfg.control_plane_ip} is not an address of this machine")
        cfg.save_advertise_address()
    opts = bootstrap.ControlPlaneOptions(external_etcd, skip_images,
                                    node_monitor_grace_period, pod_eviction_timeout, etcd_tls,
                                    not_ready_toleration)

    def join_nodes() -> dict[str, dict[str, Any]]:
        # force: `up` (re)joins this machine's own node slots; a Node left from a cluster whose node
        # credentials are gone (an older minik8s, a lost state dir) is still this machine's to take
        from actors import cluster as boot

        token = bootstrap.join_token(cfg)
        reqs = [bootstrap.JoinRequest(name=cfg.node(i).name, server=bootstrap.api_url(cfg), token=token,
                                      force=True)
                for i in range(1, nodes + 1)]
        return boot.place_nodes(cfg, node_setup.join_locals(cfg, reqs, echo), echo)

    states = _start_control_plane(cfg, opts, echo, join_nodes)
    if nodes:  # the user's shell reaches ClusterIPs through node-1, whose proxy rules DNAT them
        ensure_root_route(cfg.service_cidr, cfg.node(1).ip)
    path = _write_client_config(cfg)
    click.echo("actors:")
    ok = _echo_health(states)
    click.echo(f"cluster {'ready' if ok else 'NOT healthy'} in {time.monotonic() - t0:.1f}s; "
               f"API {bootstrap.api_url(cfg)} (client config {path})")
    if not ok:
        raise SystemExit(1)


def _start_control_plane(cfg: ClusterConfig, opts: bootstrap.ControlPlaneOptions, echo: node_setup.Echo,
                         join_nodes: Callable[[], dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The processes, then the API server, then `join_nodes`, then the controllers, the scheduler and
    the rest; returns every actor's health.

    Kubelets before controllers: after the control plane was killed, its node lifecycle controller
    gives every node a grace period from its own start; a kubelet that came back later than that
    would see its node declared lost and its running pods evicted."""
    from actors import cluster as boot

    node_setup.start_control_plane_processes(cfg, opts, echo)
    first, rest = boot.control_plane_specs(cfg, opts)
    states = boot.place_control_plane(cfg, first, echo)
    bootstrap.ensure_cluster_services(cfg)
    states.update(join_nodes())
    states.update(boot.place_control_plane(cfg, rest, echo))
    return states


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


def _status_rows(cfg: ClusterConfig) -> list[dict[str, Any]]:
    """The machine's processes (etcd, registry, Ray head, each node's dockerd and raylet), then every
    component of the registry, asked through its actor."""
    rows: list[dict[str, Any]] = [{"name": r.component, "kind": "process", "healthy": r.healthy, "detail": r.detail}
                                  for r in local.status(cfg)]
    nodes = [n.name for n in local.known_nodes(cfg)]
    actors = registry.actor_names(nodes)
    if any(r["name"] == "ray-head" and r["healthy"] for r in rows):
        from actors import launch

        launch.connect(cfg.ray_address, cfg.ray_namespace, cfg.ray_token_path)
        states = launch.health_many(actors)
    else:
        states = {name: {"healthy": False, "detail": "Ray head down"} for name in actors}
    scopes = {c.actor_name(n): (c.name, c.scope, n) for c in registry.COMPONENTS
              for n in ([None] if c.scope == registry.CONTROL_PLANE else nodes)}
    for name in actors:
        component, scope, node = scopes[name]
        state = states[name]
        rows.append({"name": name, "kind": "component", "component": component, "scope": scope, "node": node,
                     "healthy": bool(state.get("healthy")), "detail": state.get("detail", ""),
                     **{k: v for k, v in state.items() if k not in ("healthy", "detail")}})
    return rows


@click.command()
@click.option("-o", "--output", type=click.Choice(["json"]), default=None, help="Print the rows as JSON.")
@click.option("--resources", is_flag=True,
              help="Also the memory (PSS) of each process `up` started and of each component's actor.")
def status(output: str | None, resources: bool) -> None:
    """Each process and component and whether it is healthy (exit 1 if any is not).

    A component is healthy when its actor answers, its threads and servers run, and none of its
    loops is stuck (see minik8s.health). With --resources: the memory of everything `up` runs on
    this machine (PSS, containers not counted), split by process and by component.

    \b
    Example:
      minik8s status
      minik8s status -o json | jq '.components[] | select(.healthy | not)'
      minik8s status --resources
    """
    cfg = ClusterConfig()
    rows = _status_rows(cfg)
    ok = all(r["healthy"] for r in rows)
    usage = _resources(cfg, rows) if resources else None
    if output == "json":
        click.echo(json.dumps({"healthy": ok, "components": rows, **({"resources": usage} if usage else {})},
                              indent=2))
    else:
        for row in rows:
            click.echo(f"  {row['name']:<22}{'healthy' if row['healthy'] else 'UNHEALTHY'}  {row['detail']}".rstrip())
        if usage:
            _echo_resources(usage)
    if not ok:
        raise SystemExit(1)


def _resources(cfg: ClusterConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """PSS by process tree (they add up to the total) and, within them, by component actor."""
    processes = [{"name": f.name, "processes": len(f.pids), "pss_bytes": f.pss_bytes} for f in local.footprint(cfg)]
    actors = [{"name": r["name"], "pid": r["pid"], "pss_bytes": pss_bytes(r["pid"])}
              for r in rows if r["kind"] == "component" and isinstance(r.get("pid"), int)]
    return {"total_bytes": sum(p["pss_bytes"] for p in processes), "budget_bytes": FOOTPRINT_BUDGET_BYTES,
            "processes": processes, "actors": actors}


def _echo_resources(usage: dict[str, Any]) -> None:
    mib = 1024 * 1024
    click.echo("memory (PSS; containers not counted):")
    for p in usage["processes"]:
        click.echo(f"  {p['name']:<22}{p['pss_bytes'] / mib:8.0f} MiB  {p['processes']} processes")
    click.echo(f"  {'total':<22}{usage['total_bytes'] / mib:8.0f} MiB  "
               f"({usage['total_bytes'] / usage['budget_bytes']:.2f}x the {usage['budget_bytes'] / 1e9:.1f} GB budget)")
    click.echo("of which component actors:")
    for a in usage["actors"]:
        click.echo(f"  {a['name']:<22}{a['pss_bytes'] / mib:8.0f} MiB  pid {a['pid']}")


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
@click.option("--generate", is_flag=True,
              help="Make the cluster CA and join token now if missing (before the first `up`, so workers can get it).")
def token(generate: bool) -> None:
    """Print the join token nodes present to join this cluster (like k3s's node-token).

    \b
    Example:
      minik8s token
    """
    cfg = ClusterConfig()
    if not generate and not (cfg.state_dir / bootstrap.TOKEN_FILE).exists():
        raise BadRequest("no cluster: run `minik8s up` first")
    click.echo(bootstrap.join_token(cfg))


class NodeJoinConfig(BaseModel):
    """The file `minik8s join --config` reads; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")
    apiVersion: str = "minik8s.io/v1"
    kind: str = "NodeJoinConfig"
    mode: Literal["local", "host"] = "local"
    """local: a netns node made on the control plane's machine; host: this machine is the node."""
    name: str | None = None
    """The Node name; in host mode it defaults to this machine's hostname."""
    server: str
    token: str | None = None
    tokenFile: str | None = None
    """Read the token from this file instead (e.g. one `minik8s token` wrote on the head)."""
    labels: dict[str, str] = {}
    taints: list[dict[str, str]] = []
    resources: dict[str, str | int] = {}
    address: str | None = None
    """The node's IP; in host mode it defaults to this machine's source address toward `server`."""
    interface: str | None = None
    """Host mode: the device holding `address` (it carries the pod overlay)."""
    podCIDR: str | None = None
    """Host mode: a wished pod subnet; by default the API assigns one."""


def _read_token(path: Path, token_file: str) -> str:
    file = (path.parent / Path(token_file).expanduser())
    try:
        return file.read_text().strip()
    except OSError as exc:
        raise BadRequest(f"{path}: tokenFile: cannot read {file}: {exc.strerror}") from None


def load_join_config(path: Path) -> bootstrap.JoinRequest:
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
    if (conf.token is None) == (conf.tokenFile is None):
        raise BadRequest(f"{path}: give exactly one of token and tokenFile")
    token = conf.token if conf.token is not None else _read_token(path, conf.tokenFile or "")
    host_mode = conf.mode == "host"
    if not host_mode:
        for field, value in (("interface", conf.interface), ("podCIDR", conf.podCIDR)):
            if value is not None:
                raise BadRequest(f"{path}: {field} is for mode: host (a local node's follow from its name)")
    name = conf.name or (socket.gethostname().split(".")[0] if host_mode else None)
    if not name:
        raise BadRequest(f"{path}: name: Field required")
    return bootstrap.JoinRequest(name, conf.server, token, conf.labels, list(conf.taints), dict(conf.resources),
                            conf.address, host_mode, conf.interface, conf.podCIDR)


@click.command()
@click.option("--config", "config_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Node join config: mode, name, server, token, labels, taints, resources, address, interface.")
@click.option("--dry-run", is_flag=True,
              help="Host mode: print what would be started here, without asking the API or starting anything.")
@click.option("--force", is_flag=True,
              help="Take over a node name that is already in the cluster (held by another machine).")
def join(config_file: Path, dry_run: bool, force: bool) -> None:
    """Join a node to a cluster. On one machine this makes the node's netns, dockerd and raylet;
    with `mode: host` this machine is the node: its dockerd and raylet start right here.

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
    \b
    On a real machine (host mode), e.g.:
      mode: host
      name: worker-1
      server: https://192.168.1.10:6443
      tokenFile: /etc/minik8s/token
      address: 192.168.1.11     # default: the source address toward server
      interface: eth0           # default: the device holding address
    \b
    The join checks the cluster CA against the token's hash before sending the token. A name already
    in the cluster is refused unless this machine holds that node's credential (a re-join) or --force.
    """
    req = load_join_config(config_file)
    req.force = force
    cfg = ClusterConfig()
    if dry_run:
        if not req.host:
            raise BadRequest("--dry-run is for mode: host")
        for line in bootstrap.host_join_plan(cfg, req):
            click.echo(line)
        return
    from actors import cluster as boot

    joined = node_setup.join_host(cfg, req, click.echo) if req.host else node_setup.join_local(cfg, req, click.echo)
    states = boot.place_nodes(cfg, [joined], click.echo)
    ok = _echo_health(states)
    click.echo(f"node {req.name} {'joined' if ok else 'joined but NOT healthy'}")
    if not ok:
        raise SystemExit(1)


def _delete_node(client: Client, name: str) -> None:
    try:
        client.delete("Node", name, None)
    except NotFound:
        pass


@click.group()
def node() -> None:
    """Node operations."""


@node.command(name="remove")
@click.argument("name")
def node_remove(name: str) -> None:
    """Drain a node (cordon, delete its pods), stop it, and delete its Node object.

    A node on another machine (host mode) loses its actors; its dockerd and raylet stop when
    `minik8s leave` runs there.

    \b
    Example:
      minik8s node remove node-3
    """
    from actors import launch

    client = Client.from_config()
    cfg = ClusterConfig()
    client.get("Node", name, None)
    drain(client, name)
    launch.connect(cfg.ray_address, cfg.ray_namespace, cfg.ray_token_path)
    launch.kill(registry.node_actor_names(name))
    record = host.load_record(cfg, name)
    if record is not None:  # a host-mode node joined from this machine
        launch.disconnect()
        node_setup.stop_host_node(cfg, record)
    elif bootstrap.LOCAL_NODE_NAME.match(name):
        local.stop_node(cfg, bootstrap.local_node(cfg, name))
    else:
        click.echo(f"node/{name} runs on another machine: run `minik8s leave` there to stop its dockerd and raylet")
    _delete_node(client, name)
    click.echo(f"node/{name} removed")


@node.command(name="drain")
@click.argument("name")
@click.option("--timeout", "timeout_s", type=float, default=DRAIN_TIMEOUT_S, show_default=True,
              help="Seconds to wait for PodDisruptionBudgets to allow the evictions.")
def node_drain(name: str, timeout_s: float) -> None:
    """Cordon a node and evict its pods (not DaemonSet ones) through the Eviction API, retrying the
    evictions a PodDisruptionBudget refuses until it allows them or the timeout passes.

    \b
    Example:
      minik8s node drain node-3 --timeout 120
    """
    client = Client.from_config()
    client.get("Node", name, None)
    drain(client, name, timeout_s)


@click.command()
@click.argument("name", required=False)
def leave(name: str | None) -> None:
    """On a machine joined with `mode: host`: drain its node, stop its actors, dockerd and raylet,
    remove what they made here, and delete the Node (the reverse of `join`).

    \b
    Example:
      minik8s leave worker-1
    """
    cfg = ClusterConfig()
    names = host.recorded_nodes(cfg)
    if name is None:
        if len(names) != 1:
            raise BadRequest(f"name the node to leave: this machine has joined {', '.join(names) or 'none'}")
        name = names[0]
    record = host.load_record(cfg, name)
    if record is None:
        raise BadRequest(f"node {name} was not joined from this machine (joined here: {', '.join(names) or 'none'})")
    from actors import launch

    client = record.client(cfg)  # the node's own credential: it may drain and delete only itself
    try:
        try:
            client.get("Node", name, None)
        except NotFound:
            click.echo(f"node/{name} is not in the API any more (removed with `minik8s node remove`)")
        else:
            drain(client, name)
            launch.connect(record.ray_address, cfg.ray_namespace, record.cluster(cfg).ray_token_path, node_ip=record.ip)
            launch.kill(registry.node_actor_names(name))
        launch.disconnect()  # attached above: detach before its raylet stops
        node_setup.stop_host_node(cfg, record)
        _delete_node(client, name)
    finally:
        client.close()
    click.echo(f"node/{name} left: its dockerd, raylet and network set-up are gone from this machine")


COMMANDS = [up, down, status, kubeconfig, token, join, leave, node]
