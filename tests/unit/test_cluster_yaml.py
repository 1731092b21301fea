"""cluster.yaml: Ray's own launcher validation accepts it, and the commands it would run on the
head and the workers are minik8s commands that parse, with flags that agree with the provider."""

from __future__ import annotations

import copy
import shlex
import subprocess
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from ray.autoscaler._private.util import prepare_config, validate_config

from cli.cluster import join, load_join_config, token, up
from cli.main import cli
from minik8s.cluster.config import STATE_DIR_ENV

REPO = Path(__file__).resolve().parents[2]
MOUNT = "/opt/minik8s"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "cluster.yaml").read_text())
    return loaded


def minik8s_calls(commands: list[str]) -> list[list[str]]:
    """The arguments of the `minik8s …` invocations among shell commands (split at && and ;)."""
    calls = []
    for command in commands:
        for part in command.replace("&&", ";").split(";"):
            words = shlex.split(part.strip().strip("()"))
            words = words[:words.index(">")] if ">" in words else words  # drop an output redirection
            if words and words[0] == "minik8s":
                calls.append(words[1:])
    return calls


def parse(command: click.Command, args: list[str]) -> dict[str, Any]:
    with command.make_context(command.name or "", list(args)) as ctx:
        return dict(ctx.params)


def test_ray_validates_the_launcher_config(config: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert config["provider"]["type"] == "local"
    node_type = prepared["available_node_types"][prepared["head_node_type"]]
    assert node_type["min_workers"] == node_type["max_workers"] == len(config["provider"]["worker_ips"]) == 2
    # the validator is real: a misspelt field is refused
    broken = prepare_config({**copy.deepcopy(config), "worker_start_commands": []})
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_setup_installs_minik8s_from_the_synced_checkout(config: dict[str, Any]) -> None:
    assert config["file_mounts"] == {MOUNT: "."}
    assert ".venv" in config["rsync_exclude"] and ".git" in config["rsync_exclude"]
    setup = " && ".join(config["setup_commands"])
    assert f"cd {MOUNT} && make install" in setup and f"{MOUNT}/.venv/bin/minik8s /usr/local/bin/minik8s" in setup
    assert config["auth"]["ssh_user"] == "root"


def test_head_makes_the_token_then_starts_a_control_plane_only_head(config: dict[str, Any]) -> None:
    calls = minik8s_calls(config["head_start_ray_commands"])
    assert [c[0] for c in calls] == ["token", "up"]
    assert parse(token, calls[0][1:]) == {"generate": True}
    assert f"> {MOUNT}/.join/token" in config["head_start_ray_commands"][0]
    params = parse(up, calls[1][1:])
    assert params["nodes"] == 0
    assert params["advertise_address"] == config["provider"]["head_ip"]
    assert params["ray_autoscaling_config"] == Path("~/ray_bootstrap_config.yaml")
    assert not any("ray stop" in c or "ray start" in c for c in config["head_start_ray_commands"])


def test_worker_commands_write_a_host_mode_join_config(config: dict[str, Any], tmp_path: Path) -> None:
    head = config["provider"]["head_ip"]
    (tmp_path / ".join").mkdir()
    (tmp_path / ".join" / "token").write_text("K10" + "ab" * 32 + "::node:secret\n")
    write, join_cmd = config["worker_start_ray_commands"]
    # run the real shell command, with the mount point moved into tmp_path
    subprocess.run(["bash", "-c", write.replace(MOUNT, str(tmp_path))], check=True,
                   env={"RAY_HEAD_IP": head, "PATH": "/usr/bin:/bin"})
    calls = minik8s_calls([join_cmd])
    assert calls == [["join", "--config", f"{MOUNT}/.join/node.yaml"]]
    moved = [a.replace(MOUNT, str(tmp_path)) for a in calls[0][1:]]  # --config must exist to parse
    params = parse(join, moved)
    assert params["config_file"] == tmp_path / ".join" / "node.yaml" and not params["dry_run"]
    req = load_join_config(params["config_file"])
    assert req.host and req.server == f"https://{head}:6443"
    assert req.token == "K10" + "ab" * 32 + "::node:secret"
    assert req.name == subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert req.labels == {"minik8s.io/machine": "true"} and req.address is None and req.interface is None


def test_join_dry_run_prints_the_processes_it_would_start(tmp_path: Path) -> None:
    conf = tmp_path / "node.yaml"
    conf.write_text("apiVersion: minik8s.io/v1\nkind: NodeJoinConfig\nmode: host\nname: metal-1\n"
                    "server: https://127.0.0.1:6443\ntoken: K10abc::node:x\nlabels: {pool: metal}\n")
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["join", "--config", str(conf), "--dry-run"], env={STATE_DIR_ENV: str(state)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("node metal-1: host mode, 127.0.0.1/8 on lo")
    dockerd = next(line for line in lines if line.startswith("start: dockerd"))
    assert f"--data-root {state}/nodes/metal-1/docker" in dockerd and f"-H unix://{state}/nodes/metal-1/docker.sock"\
        in dockerd
    assert "--bip=<pod-gateway>/<prefix>" in dockerd and "--registry-mirror http://127.0.0.1:5000" in dockerd
    raylet = next(line for line in lines if "ray start" in line)
    assert "--address=127.0.0.1:6379" in raylet and "--node-ip-address=127.0.0.1" in raylet
    assert '"minik8s/node/metal-1":1000' in raylet and f"--temp-dir={state}/nodes/metal-1/ray" in raylet
    assert lines[-1].startswith("actors: kubelet-metal-1, network-metal-1, proxy-metal-1")
    assert not state.exists()  # a dry run makes nothing

    conf.write_text(conf.read_text() + "podCIDR: 10.244.7.0/24\ninterface: lo\n")
    result = CliRunner().invoke(cli, ["join", "--config", str(conf), "--dry-run"], env={STATE_DIR_ENV: str(state)})
    assert result.exit_code == 0, result.output
    assert "--bip=10.244.7.1/24" in result.output and "wishing pod CIDR 10.244.7.0/24" in result.output
