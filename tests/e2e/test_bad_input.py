"""Bad input: one clear line naming the problem and where, exit code 1, and nothing created."""

from __future__ import annotations

import pytest

from minik8s import Client
from tests.e2e.conftest import run, unique

GOOD = """apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec: {{containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]}}
"""


def pod_names(client: Client, ns: str) -> set[str]:
    return {p.metadata.name for p in client.list("Pod", ns).items}


@pytest.mark.parametrize("bad, expected", [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n", "invalid YAML"),
    ("apiVersion: v1\nkind: Pood\nmetadata: {name: x}\n", 'no kind "Pood"'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a, image: busybox, imagee: b}]}\n",
     'spec.containers[0]: unknown field "imagee"'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{image: busybox}]}\n",
     "spec.containers[0].name: Required value"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a, image: busybox, "
     "resources: {limits: {cpu: lots}}}]}\n", "spec.containers[0].resources.limits.cpu"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a, image: busybox}, "
     "{name: a, image: busybox}]}\n", 'spec.containers[1].name: Duplicate value: "a"'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: a, image: busybox}]}\n",
     "metadata.name"),
    ("kind: Pod\nmetadata: {name: x}\n", 'missing required field "apiVersion"'),
])
def test_bad_manifest_is_one_clear_line_and_creates_nothing(client: Client, ns: str, bad: str, expected: str) -> None:
    good = unique("good")
    before = pod_names(client, ns)
    # a valid document first: all-or-nothing means it is not created either
    proc = run("apply", "-n", ns, "-f", "-", input=GOOD.format(name=good) + "---\n" + bad, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert "document 2" in lines[0] or "invalid YAML" in lines[0]
    assert pod_names(client, ns) == before


def test_name_clash_on_create_is_reported(client: Client, ns: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = unique("clash")
    run("apply", "-n", ns, "-f", "-", input=GOOD.format(name=name))
    uid = client.get("Pod", name, ns).metadata.uid
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(run("kubeconfig").stdout)
    import subprocess

    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "-n", ns, "-f", "-"],
                          input=GOOD.format(name=name), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and f'pods "{name}" already exists' in proc.stderr
    assert client.get("Pod", name, ns).metadata.uid == uid
    run("delete", "pod", "-n", ns, name, "--grace-period", "0")


def test_unknown_kind_and_missing_object_on_the_cli(cluster: None) -> None:
    # creates nothing: the CLI's namespace-less default (`default`) is what a user without -n meets
    proc = run("get", "widgets", check=False)
    assert proc.returncode == 1 and 'doesn\'t have a resource type "widgets"' in proc.stderr
    proc = run("get", "pod", "does-not-exist", check=False)
    assert proc.returncode == 1 and 'pods "does-not-exist" not found' in proc.stderr
    proc = run("apply", "-f", "/nonexistent.yaml", check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
