"""label, annotate, get -L/--show-labels and wait through the CLI against a real etcd + API server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from minik8s import Client
from tests.conftest import TEST_TOKEN, uniq


@pytest.fixture
def ns(apiserver: str, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": apiserver, "token": TEST_TOKEN}))
    monkeypatch.setenv("MINIK8S_CONFIG", str(config))
    name = uniq("cli")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name


def mk(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _pod(client: Client, ns: str, name: str, labels: dict[str, str] | None = None) -> None:
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                                    "labels": labels or {}},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})


def test_label_and_annotate(client: Client, ns: str) -> None:
    _pod(client, ns, "a", {"app": "web"})
    _pod(client, ns, "b", {"app": "web"})
    result = mk("label", "pods", "a", "tier=front", "-n", ns)
    assert result.exit_code == 0 and result.output.strip() == "pod/a labeled"
    result = mk("label", "pod/a", "tier=back", "-n", ns)
    assert result.exit_code == 1
    assert "error: 'tier' already has a value (front), and --overwrite is false" in result.output
    assert client.get("Pod", "a", ns).metadata.labels["tier"] == "front"
    result = mk("label", "pods", "-l", "app=web", "tier=back", "--overwrite", "-n", ns)
    assert result.exit_code == 0 and result.output.split("\n")[:2] == ["pod/a labeled", "pod/b labeled"]
    result = mk("label", "pods", "--all", "tier-", "gone-", "-n", ns)
    assert result.exit_code == 0 and 'label "gone" not found.' in result.output and "pod/b unlabeled" in result.output
    assert "tier" not in client.get("Pod", "b", ns).metadata.labels

    stale = client.get("Pod", "a", ns).metadata.resourceVersion
    client.patch("Pod", "a", {"metadata": {"labels": {"x": "1"}}}, ns)
    result = mk("label", "pod", "a", "y=2", "--resource-version", stale, "-n", ns)
    assert result.exit_code == 1 and "the object has been modified" in result.output

    assert mk("annotate", "pod", "a", "note=hi", "-n", ns).output.strip() == "pod/a annotated"
    result = mk("annotate", "pod", "a", "note=bye", "-n", ns)
    assert result.exit_code == 1 and "'note' already has a value (hi)" in result.output
    assert mk("annotate", "namespace", ns, "team=a").exit_code == 0  # a cluster-scoped kind
    assert client.get("Namespace", ns, None).metadata.annotations["team"] == "a"


def test_get_label_columns(client: Client, ns: str) -> None:
    _pod(client, ns, "p", {"app": "web", "tier": "db"})
    _pod(client, ns, "q")
    lines = mk("get", "pods", "-n", ns, "-L", "tier", "--show-labels").output.splitlines()
    assert lines[0].split()[-2:] == ["TIER", "LABELS"]
    assert lines[1].split()[0] == "p" and lines[1].split()[-2:] == ["db", "app=web,tier=db"]
    assert lines[2].split()[0] == "q" and lines[2].split()[-1] == "<none>"


def test_wait_uses_the_watch(client: Client, ns: str) -> None:
    _pod(client, ns, "w")

    def later() -> None:
        time.sleep(0.5)
        pod = client.get("Pod", "w", ns).to_dict()
        pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        client.update_status(pod)

    threading.Thread(target=later, daemon=True).start()
    result = mk("wait", "pod/w", "--for=condition=Ready", "--timeout=20s", "-n", ns)
    assert result.exit_code == 0 and result.output.strip() == "pod/w condition met"
    result = mk("wait", "pod", "w", "--for=jsonpath={.status.phase}=Running", "-n", ns)
    assert result.exit_code == 0
    result = mk("wait", "pod/w", "--for=condition=Ready=False", "--timeout=1s", "-n", ns)
    assert result.exit_code == 1 and "error: timed out waiting for the condition on pods/w" in result.output
    threading.Thread(target=lambda: (time.sleep(0.5), client.delete("Pod", "w", ns, 0)), daemon=True).start()
    result = mk("wait", "pod/w", "--for=delete", "--timeout=20s", "-n", ns)
    assert result.exit_code == 0 and result.output.strip() == "pod/w deleted"
