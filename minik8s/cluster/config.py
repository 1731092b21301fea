"""Addresses, ports and paths of a local cluster, derived from one dataclass.

Every IP, port and path the cluster code uses comes from :class:`ClusterConfig`; nothing
else in :mod:`minik8s.cluster` hard-codes one.  Node ``i`` (from 1) is derived by
:meth:`ClusterConfig.node`; a node that is a whole machine (host mode, joined with
``minik8s join`` on a real machine) by :meth:`ClusterConfig.host_node`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

#: Environment variable overriding the default state directory.
STATE_DIR_ENV = "MINIK8S_STATE_DIR"
#: Where the cluster keeps pidfiles, logs, etcd data, images and per-node Docker data.
DEFAULT_STATE_DIR = Path("/var/lib/minik8s")
#: Linux limits interface names to 15 characters (IFNAMSIZ - 1).
IFNAME_MAX = 15
#: Written by ``up --advertise-address`` in the state dir, read back by every later ``ClusterConfig``.
ADVERTISE_ADDRESS_FILE = "advertise-address"


def parse_ipv4(value: str, what: str) -> str:
    """``value`` as a canonical IPv4 address; ValueError naming ``what`` otherwise."""
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f'{what} must be an IPv4 address, got "{value}"') from None


def default_state_dir() -> Path:
    """``$MINIK8S_STATE_DIR`` if set, else ``/var/lib/minik8s``."""
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else DEFAULT_STATE_DIR


@dataclass(frozen=True)
class NodeConfig:
    """Everything that identifies node ``index`` of a local cluster (see :meth:`ClusterConfig.node`)."""

    name: str
    """Node name, ``node-<index>``; also the Kubernetes ``Node`` name."""
    index: int
    """1-based node number (0 for a host-mode node: it has no slot on the underlay)."""
    ip: str
    """The node's underlay address (its ``eth0`` inside the netns)."""
    prefixlen: int
    """Prefix length of the underlay network."""
    gateway: str
    """Default route inside the netns: the head's underlay address."""
    pod_cidr: str
    """This node's pod subnet (``Node.spec.podCIDR``)."""
    pod_gateway: str
    """First address of the pod subnet: the node bridge (``docker0``) address, as ``--bip``."""
    netns: str | None
    """Network namespace name (``/var/run/netns/<netns>``); None for a host-mode node, whose processes
    run in the network namespace of the machine (or of whoever ran ``minik8s join``)."""
    veth_host: str | None
    """Root-namespace side of the veth pair, enslaved to the underlay bridge (None in host mode)."""
    veth_node: str
    """Node side of the veth pair, renamed to this inside the netns."""
    dir: Path
    """The node's state directory."""
    docker_socket: Path
    """The node dockerd's API socket."""
    docker_data_root: Path
    docker_exec_root: Path
    docker_pidfile: Path
    ray_temp_dir: Path
    """This raylet's Ray temp/session dir (per node, so logs and sockets never collide)."""
    ray_resource: str
    """Custom Ray resource that pins actors to this node."""
    interface: str = "eth0"
    """The device holding ``ip``, which carries the VXLAN overlay: ``eth0`` inside a netns node,
    the machine's NIC in host mode."""

    @property
    def host_mode(self) -> bool:
        """True if the node is the machine it runs on (no netns or veth of its own)."""
        return self.netns is None

    @property
    def docker_url(self) -> str:
        """``unix://`` URL of the node dockerd, for the docker SDK."""
        return f"unix://{self.docker_socket}"

    @property
    def netns_path(self) -> Path:
        """Bind-mount of the namespace, usable with ``nsenter --net=``."""
        if self.netns is None:
            raise ValueError(f"{self.name} is a host-mode node: it has no network namespace of its own")
        return Path("/var/run/netns") / self.netns


@dataclass
class ClusterConfig:
    """A local cluster's layout.  The defaults are the documented ones (DESIGN.md section 3)."""

    state_dir: Path = field(default_factory=default_state_dir)
    """Root of all state: ``logs/``, ``run/`` (pidfiles), ``etcd/``, ``registry/``, ``builder/``,
    ``nodes/``, ``ray/``."""
    nodes: int = 1
    """How many nodes ``up`` starts."""
    advertise_address: str | None = None
    """The address other machines reach the control plane at (API, Ray head, registry, DNS): one
    of the head machine's own IPs.  None: the one ``up --advertise-address`` recorded in the state
    dir, else the underlay head address (one machine)."""

    underlay_bridge: str = "mk8s0"
    """Bridge in the root netns joining the control plane and every node."""
    underlay_cidr: str = "10.200.0.0/24"
    """Underlay network; the head takes host ``head_host_index``, node ``i`` host ``node_host_offset + i``."""
    head_host_index: int = 1
    node_host_offset: int = 10
    netns_prefix: str = "mk8s-"
    """Node ``node-i`` lives in netns ``<netns_prefix>node-i``."""

    pod_cidr: str = "10.244.0.0/16"
    """Cluster pod network; node ``i`` gets the ``i``-th ``/node_pod_prefixlen`` subnet."""
    node_pod_prefixlen: int = 24
    pod_mtu: int = 1450
    """Pod interfaces' MTU: the underlay's 1500 less VXLAN's 50 bytes of headers (as flannel does)."""
    service_cidr: str = "10.96.0.0/16"
    """Virtual IPs of Services (cluster DNS takes host ``dns_host_index``)."""
    dns_host_index: int = 10

    lockdown_table: str = "minik8s-lockdown"
    """nftables table keeping pods away from internal ports (:mod:`minik8s.cluster.lockdown`): in each
    node's namespace under this name, in the control plane's with ``-cp`` appended."""

    api_port: int = 6443
    etcd_client_port: int = 12379
    """Not etcd's default 2379, so a system etcd may run beside us."""
    etcd_peer_port: int = 12380
    registry_port: int = 5000

    ray_autoscaling_config: Path | None = None
    """``ray start --head --autoscaling-config``: the file ``ray up`` leaves on the head
    (``~/ray_bootstrap_config.yaml``), so Ray's autoscaler sets up the workers of ``cluster.yaml``."""

    ray_port: int = 6379
    """GCS port of the Ray head.  Ray's ports must stay outside its worker range, 10002-19999."""
    ray_client_server_port: int = 10001
    """Ray client server on the head (fixed port: change it to run two heads side by side)."""
    ray_dashboard_agent_port: int = 52365
    """Dashboard agent HTTP port (fixed by Ray; same reason as above)."""
    ray_dashboard_port: int = 8265
    """Even with ``--include-dashboard=false`` Ray 2.60 runs a minimal dashboard head on loopback here."""
    ray_namespace: str = "minik8s"
    ray_auth_token_file: Path | None = None
    """Ray's shared secret (``RAY_AUTH_MODE=token``); ``None`` means ``<state_dir>/ray-auth-token``.
    Every Ray process and driver of the cluster reads it through ``RAY_AUTH_TOKEN_PATH``."""
    ray_temp_dir: Path | None = None
    """Ray session directory; ``None`` means ``<state_dir>/ray``.  Keep it short: Ray puts sockets there."""
    ray_head_cpus: int = 2
    ray_node_cpus: int = 2
    ray_object_store_bytes: int = 80 * 1024 * 1024
    """Per-raylet object store; Ray's minimum is 75 MiB."""
    ray_sigterm_drain_s: float = 0.0
    """``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S``: Ray 2.60 drains a node for up to 30 s on SIGTERM
    while actors run on it.  Stopping a node stops its actors anyway (they are cattle), so don't wait."""
    ray_log_monitor: bool = False
    """Ray's log monitor (~80 MB per raylet) only streams worker output to attached drivers; our
    actors are detached, and their logs stay in the session dir either way."""
    ray_control_plane_resource: str = "minik8s/control-plane"
    ray_node_resource_prefix: str = "minik8s/node/"
    ray_resource_amount: int = 1000

    ready_timeout_s: float = 60.0
    """How long ``start_*`` waits for one component to become ready."""
    stop_timeout_s: float = 15.0
    """How long ``stop`` waits after SIGTERM before SIGKILL."""

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if self.nodes < 0:
            raise ValueError(f"nodes must be >= 0, got {self.nodes}")
        if len(self.underlay_bridge) > IFNAME_MAX:
            raise ValueError(f"underlay_bridge {self.underlay_bridge!r} is over {IFNAME_MAX} characters")
        if self.advertise_address is None:
            try:
                self.advertise_address = (self.state_dir / ADVERTISE_ADDRESS_FILE).read_text().strip() or None
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                pass
        if self.advertise_address is not None:
            self.advertise_address = parse_ipv4(self.advertise_address, "advertise address")

    def save_advertise_address(self) -> None:
        """Record ``advertise_address`` in the state dir, so later commands (status, token, images) use it."""
        path = self.state_dir / ADVERTISE_ADDRESS_FILE
        if self.advertise_address is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.advertise_address + "\n")

    # ---- addresses -------------------------------------------------------------------------------

    @property
    def underlay_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.underlay_cidr)

    @property
    def head_ip(self) -> str:
        """The control plane's underlay address, on the bridge."""
        return str(self.underlay_network[self.head_host_index])

    @property
    def control_plane_ip(self) -> str:
        """Where nodes reach the control plane: the advertised address, else the underlay head address.
        Local (netns) nodes reach either: their default route leads to the head's root netns."""
        return self.advertise_address or self.head_ip

    @property
    def pod_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_cidr)

    @property
    def service_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.service_cidr)

    @property
    def dns_ip(self) -> str:
        """Cluster DNS service address."""
        return str(self.service_network[self.dns_host_index])

    @property
    def etcd_endpoints(self) -> list[str]:
        """Client URLs of the managed etcd: loopback only.  Only the API server talks to etcd, and it runs
        on this machine; nothing on the underlay (pods, nodes) has any business with it."""
        return [f"http://127.0.0.1:{self.etcd_client_port}"]

    @property
    def etcd_peer_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_peer_port}"

    @property
    def registry_addr(self) -> str:
        """``host:port`` of the image registry, as Docker names it (``--insecure-registry``)."""
        return f"{self.control_plane_ip}:{self.registry_port}"

    @property
    def registry_url(self) -> str:
        return f"http://{self.registry_addr}"

    @property
    def ray_address(self) -> str:
        """GCS address workers join and drivers pass to ``ray.init``."""
        return f"{self.control_plane_ip}:{self.ray_port}"

    # ---- paths -----------------------------------------------------------------------------------

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """Pidfiles of managed processes."""
        return self.state_dir / "run"

    @property
    def etcd_dir(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def registry_dir(self) -> Path:
        """Registry config and blob storage."""
        return self.state_dir / "registry"

    @property
    def builder_dir(self) -> Path:
        """The builder dockerd's data, exec root and socket (``docker.sock``)."""
        return self.state_dir / "builder"

    @property
    def builder_socket(self) -> Path:
        return self.builder_dir / "docker.sock"

    @property
    def nodes_dir(self) -> Path:
        return self.state_dir / "nodes"

    @property
    def ray_token_path(self) -> Path:
        """Ray's auth token (mode 0600), outside Ray's temp dir so a session cleanup never takes it."""
        return self.ray_auth_token_file if self.ray_auth_token_file is not None else self.state_dir / "ray-auth-token"

    @property
    def ray_dir(self) -> Path:
        return self.ray_temp_dir if self.ray_temp_dir is not None else self.state_dir / "ray"

    # ---- nodes -----------------------------------------------------------------------------------

    def node_name(self, index: int) -> str:
        return f"node-{index}"

    def node(self, index: int) -> NodeConfig:
        """Derive node ``index`` (1-based): its IPs, pod subnet, netns, veth names and paths."""
        if index < 1:
            raise ValueError(f"node index starts at 1, got {index}")
        net = self.underlay_network
        host = self.node_host_offset + index
        if host >= net.num_addresses - 1:
            raise ValueError(f"node {index} does not fit in underlay {net}")
        pods = self.pod_network
        if index >= 2 ** (self.node_pod_prefixlen - pods.prefixlen):
            raise ValueError(f"node {index} does not fit in pod CIDR {self.pod_cidr}")
        size = 2 ** (32 - self.node_pod_prefixlen)
        pod_net = ipaddress.IPv4Network((int(pods.network_address) + index * size, self.node_pod_prefixlen))
        name = self.node_name(index)
        veth_host = f"{self.underlay_bridge}n{index}"
        if len(veth_host) > IFNAME_MAX:
            raise ValueError(f"veth name {veth_host!r} is longer than {IFNAME_MAX} characters")
        d = self.nodes_dir / name
        return NodeConfig(
            name=name,
            index=index,
            ip=str(net[host]),
            prefixlen=net.prefixlen,
            gateway=self.head_ip,
            pod_cidr=str(pod_net),
            pod_gateway=str(pod_net[1]),
            netns=f"{self.netns_prefix}{name}",
            veth_host=veth_host,
            veth_node="eth0",
            dir=d,
            docker_socket=d / "docker.sock",
            docker_data_root=d / "docker",
            docker_exec_root=d / "exec",
            docker_pidfile=d / "docker.pid",
            ray_temp_dir=d / "ray",
            ray_resource=f"{self.ray_node_resource_prefix}{name}",
        )

    def host_node(self, name: str, ip: str, prefixlen: int, interface: str, pod_cidr: str,
                  gateway: str) -> NodeConfig:
        """A host-mode node: this machine itself, at ``ip`` on ``interface``, with the pod subnet the API
        gave it; its dockerd and raylet keep their state under ``<state_dir>/nodes/<name>`` as local ones do."""
        pod_net = ipaddress.IPv4Network(pod_cidr, strict=True)
        d = self.nodes_dir / name
        return NodeConfig(
            name=name, index=0, ip=parse_ipv4(ip, "node address"), prefixlen=prefixlen, gateway=gateway,
            pod_cidr=str(pod_net), pod_gateway=str(pod_net[1]), netns=None, veth_host=None, veth_node=interface,
            dir=d, docker_socket=d / "docker.sock", docker_data_root=d / "docker", docker_exec_root=d / "exec",
            docker_pidfile=d / "docker.pid", ray_temp_dir=d / "ray",
            ray_resource=f"{self.ray_node_resource_prefix}{name}", interface=interface,
        )

    def all_nodes(self) -> list[NodeConfig]:
        """Nodes ``1..nodes``."""
        return [self.node(i) for i in range(1, self.nodes + 1)]
