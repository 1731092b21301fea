"""`minik8s apply -f` with malformed YAML or wrong-typed fields, against a real etcd + API server:
one line naming the problem, exit code 1, no traceback, and nothing created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from minik8s import Client
from tests.conftest import TEST_TOKEN, uniq

GOOD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: b}\n"
BAD = [
    ("apiVersion: v1\nkind: Pod\nmetadata: x\n", "metadata"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: []\n", "spec"),
    ("apiVersion: v1\nkind: Pod\nmetadata: [a, b]\n", "metadata"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: 5}\nspec: {containers: [{name: c, image: busybox}]}\n",
     "metadata.name"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: x}\n", "metadata.labels"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: [1]}\n", "metadata.namespace"),
    ("apiVersion: 1\nkind: Pod\nmetadata: {name: p}\n", "apiVersion: must be a string"),
    ("apiVersion: v1\nkind: [Pod]\nmetadata: {name: p}\n", "kind"),
    ("- a\n- b\n", "expected a mapping with apiVersion and kind, not a list"),
    ("just a string\n", "not a string"),
    ("42\n", "not a number"),
    ("apiVersion: v1\nkind: List\nitems: [1]\n", "items[0]: expected a mapping"),
    ("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod, metadata: x}]\n", "items[0]: metadata"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p\n", "invalid YAML"),
    ("apiVersion: v1\nkind: Pod\n\tmetadata: {}\n", "invalid YAML"),
    ("apiVersion: v1\nkind: Pod\nmetadata: &a {name: p, x: *a}\n", "metadata.x: a YAML alias"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: .nan}\n", "data.a: nan"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: !!binary aGVsbG8=}\n", "data.a"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: 1}\n", "data.a"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 99999999999999999999999,"
     " selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: "
     "[{name: c, image: busybox}]}}}\n", "spec.replicas"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox, "
     "ports: [{containerPort: 1e400}]}]}\n", "containerPort"),
]


@pytest.fixture
def ns(apiserver: str, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": apiserver, "token": TEST_TOKEN}))
    monkeypatch.setenv("MINIK8S_CONFIG", str(config))
    name = uniq("badcli")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name


@pytest.mark.parametrize("bad, names", BAD)
def test_apply_bad_manifest_is_one_line_and_creates_nothing(client: Client, ns: str, tmp_path: Path,
                                                            bad: str, names: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD + "---\n" + bad)
    result = CliRunner().invoke(cli, ["apply", "-f", str(path), "-n", ns])
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert names in lines[0]
    assert "Traceback" not in result.output
    assert client.list("ConfigMap", ns).items == []  # the good document before it was not applied either


def test_yaml_timestamps_are_sent_as_strings(client: Client, ns: str, tmp_path: Path) -> None:
    """As kubectl converts YAML to JSON: an unquoted date is the string it looks like."""
    path = tmp_path / "m.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dated}\ndata: {a: 2020-01-01}\n")
    result = CliRunner().invoke(cli, ["apply", "-f", str(path), "-n", ns])
    assert result.exit_code == 0, result.output
    assert client.get("ConfigMap", "dated", ns).data == {"a": "2020-01-01"}
