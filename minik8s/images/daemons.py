"""Argv and config for the image daemons the cluster runs as managed processes.

- the registry: Debian ``docker-registry`` (CNCF distribution 2.x), plain HTTP, filesystem
  storage, deletes enabled;
- the builder ``dockerd``: runs ``minik8s image build`` and the base image builds. It has
  no bridge (``--bridge=none``; builds use ``network_mode="none"``), its own data/exec
  roots and socket under ``state_dir``, and the registry as mirror and insecure registry.

Node dockerds get ``node_dockerd_registry_args(registry)`` so plain pulls work too, but
the kubelet pulls explicit refs (``minik8s.images.registry.ensure_image``).

Keep ``state_dir`` short: containerd's socket lives under the exec root and a unix
socket path is limited to ``UNIX_PATH_MAX`` bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

LOG = logging.getLogger(__name__)

REGISTRY_BINARY = "docker-registry"
DOCKERD_BINARY = "dockerd"
REGISTRY_CONFIG_VERSION = "0.1"
REGISTRY_LOG_LEVEL = "warn"
UNIX_PATH_MAX = 107
CONFIG_MODE = 0o644

BUILDER_DATA_DIR = "data"
BUILDER_EXEC_DIR = "exec"
BUILDER_SOCKET = "docker.sock"
BUILDER_PIDFILE = "docker.pid"
CONTAINERD_SOCKET_SUFFIX = "containerd/containerd.sock"


def write_registry_config(
    path: Path, storage_dir: Path, addr: str, log_level: str = REGISTRY_LOG_LEVEL
) -> Path:
    """Write a registry config serving HTTP on ``addr`` (``IP:PORT``) from ``storage_dir``."""
    config = {
        "version": REGISTRY_CONFIG_VERSION,
        "log": {"level": log_level, "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(Path(storage_dir).resolve())},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": addr},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Path(storage_dir).mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    target.chmod(CONFIG_MODE)
    LOG.debug("wrote registry config", extra={"path": str(target), "addr": addr})
    return target


def registry_argv(config_path: Path) -> list[str]:
    """Argv that runs the registry in the foreground with ``config_path``."""
    return [REGISTRY_BINARY, "serve", str(config_path)]


def node_dockerd_registry_args(registry: str) -> list[str]:
    """Extra dockerd flags so a daemon trusts the plain-HTTP cluster registry and uses it as mirror."""
    return ["--registry-mirror", f"http://{registry}", "--insecure-registry", registry]


def builder_socket(state_dir: Path) -> Path:
    return Path(state_dir) / BUILDER_SOCKET


def builder_docker_url(state_dir: Path) -> str:
    """The ``base_url`` for ``docker.DockerClient`` talking to the builder."""
    return f"unix://{builder_socket(state_dir)}"


def builder_dockerd_argv(state_dir: Path, registry: str) -> list[str]:
    """Argv for the builder dockerd; all its state lives under ``state_dir``."""
    state = Path(state_dir).resolve()
    exec_root = state / BUILDER_EXEC_DIR
    if len(str(exec_root / CONTAINERD_SOCKET_SUFFIX)) > UNIX_PATH_MAX:
        raise ValueError(
            f"builder state dir {state} is too long for dockerd's unix sockets; use a shorter one"
        )
    return [
        DOCKERD_BINARY,
        "--data-root",
        str(state / BUILDER_DATA_DIR),
        "--exec-root",
        str(exec_root),
        "-H",
        f"unix://{state / BUILDER_SOCKET}",
        "--pidfile",
        str(state / BUILDER_PIDFILE),
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        *node_dockerd_registry_args(registry),
    ]
