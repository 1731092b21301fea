"""The platform verbs on the real cluster: label, annotate, get --show-labels / -L, wait, and status
(every component healthy as JSON, a component whose process stops answering is reported, the memory of
each with --resources, and README's "What runs where" table naming exactly status's rows)."""

from __future__ import annotations

import json
import os
import re
import signal
from typing import Any

from minik8s import Client
from tests.e2e.conftest import REPO, pod_on, run, unique, wait_for, web_app

PODS_READY_S = "120s"


def _status() -> tuple[int, dict[str, Any]]:
    proc = run("status", "-o", "json", check=False, timeout=180)
    return proc.returncode, json.loads(proc.stdout)


def _rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in doc["components"]}


def test_label_annotate_and_label_columns(client: Client, ns: str) -> None:
    name = unique("lbl")
    run("apply", "-n", ns, "-f", "-", input=pod_on(name, None, "busybox", ["sleep", "3600"]))
    try:
        assert run("label", "pod", "-n", ns, name, "tier=front", "team=a").stdout.strip() == f"pod/{name} labeled"
        table = run("get", "pods", "-n", ns, name, "--show-labels").stdout
        assert "LABELS" in table.splitlines()[0] and "team=a,tier=front" in table
        columns = run("get", "pods", "-n", ns, "-L", "tier,team", "-l", "tier=front").stdout.splitlines()
        assert columns[0].split()[-2:] == ["TIER", "TEAM"]
        assert any(line.split()[0] == name and line.split()[-2:] == ["front", "a"] for line in columns[1:])

        refused = run("label", "-n", ns, f"pod/{name}", "tier=back", check=False)
        assert refused.returncode == 1
        assert "'tier' already has a value (front), and --overwrite is false" in refused.stderr
        assert client.get("Pod", name, ns).metadata.labels["tier"] == "front"  # nothing changed
        assert run("label", "-n", ns, f"pod/{name}", "tier=back", "--overwrite").stdout.strip() == f"pod/{name} labeled"
        assert run("label", "pods", "-n", ns, name, "team-").stdout.strip() == f"pod/{name} unlabeled"
        labels = client.get("Pod", name, ns).metadata.labels
        assert labels["tier"] == "back" and "team" not in labels

        assert run("annotate", "pod", "-n", ns, name, "owner=alice").stdout.strip() == f"pod/{name} annotated"
        refused = run("annotate", "pod", "-n", ns, name, "owner=bob", check=False)
        assert refused.returncode == 1 and "--overwrite is false" in refused.stderr and "(alice)" in refused.stderr
        run("annotate", "pod", "-n", ns, name, "owner=bob", "--overwrite")
        assert client.get("Pod", name, ns).metadata.annotations["owner"] == "bob"
        run("annotate", "pod", "-n", ns, name, "owner-")
        assert "owner" not in (client.get("Pod", name, ns).metadata.annotations or {})

        bad = run("label", "pod", "-n", ns, name, "tier=not valid!", check=False)
        assert bad.returncode != 0 and "not a valid label value" in bad.stderr
    finally:
        run("delete", "pod", "-n", ns, name, "--grace-period", "0", check=False)


def test_label_works_for_cluster_scoped_kinds(client: Client) -> None:
    run("label", "node", "node-2", "e2e-mark=yes", "--overwrite")
    try:
        assert client.get("Node", "node-2", None).metadata.labels["e2e-mark"] == "yes"
        table = run("get", "nodes", "-L", "e2e-mark").stdout.splitlines()
        assert table[0].split()[-1] == "E2E-MARK"
        assert [line.split()[-1] for line in table if line.startswith("node-2")] == ["yes"]
    finally:
        run("label", "node", "node-2", "e2e-mark-")


def test_wait_for_conditions_jsonpath_and_delete(client: Client, ns: str) -> None:
    name = unique("wait")
    run("apply", "-n", ns, "-f", "-", input=pod_on(name, None, "busybox", ["sleep", "3600"]))
    try:
        out = run("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready", f"--timeout={PODS_READY_S}", timeout=180)
        assert out.stdout.strip() == f"pod/{name} condition met"
        assert client.get("Pod", name, ns).status.phase == "Running"
        out = run("wait", "pod", "-n", ns, name, "--for=jsonpath={.status.phase}=Running", "--timeout=10s")
        assert out.stdout.strip() == f"pod/{name} condition met"

        late = run("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready=false", "--timeout=2s", check=False)
        assert late.returncode == 1
        assert late.stderr.strip() == f"error: timed out waiting for the condition on pods/{name}"

        run("delete", "pod", "-n", ns, name, "--grace-period", "0", "--no-wait")
        out = run("wait", "-n", ns, f"pod/{name}", "--for=delete", "--timeout=60s", timeout=90)
        assert out.stdout.strip() == f"pod/{name} deleted"
        assert not [p for p in client.list("Pod", ns).items if p.metadata.name == name]
    finally:
        run("delete", "pod", "-n", ns, name, "--grace-period", "0", "--ignore-not-found", check=False)

    missing = run("wait", "-n", ns, "pod/no-such-pod", "--for=condition=Ready", "--timeout=1s", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_wait_for_a_deployment_to_be_available(ns: str) -> None:
    name = unique("avail")
    run("apply", "-n", ns, "-f", "-", input=web_app(name, replicas=2))
    try:
        out = run("wait", "-n", ns, f"deploy/{name}", "--for=condition=Available", f"--timeout={PODS_READY_S}",
                  timeout=180)
        assert out.stdout.strip() == f"deployment/{name} condition met"
    finally:
        run("delete", "-n", ns, "-f", "-", input=web_app(name, replicas=2), check=False)


def test_status_json_lists_every_component_healthy(cluster: None) -> None:
    code, doc = _status()
    rows = _rows(doc)
    expected = ["apiserver", "scheduler", "controller-manager", "gateway", "dns",
                *(f"{c}-node-{i}" for i in (1, 2, 3) for c in ("kubelet", "network", "proxy"))]
    assert set(expected) <= set(rows), sorted(rows)
    assert code == 0 and doc["healthy"], [r for r in rows.values() if not r["healthy"]]
    for name in expected:
        assert rows[name]["healthy"] and rows[name]["kind"] == "component" and rows[name]["pid"] > 0, rows[name]
    assert rows["dns"]["scope"] == "control-plane" and rows["kubelet-node-2"]["node"] == "node-2"
    assert {"etcd", "registry", "ray-head"} <= set(rows)


def test_readme_table_names_exactly_the_rows_of_status(cluster: None) -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## What runs where"):]
    section = section[:section.index("\n## ")]
    names = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    documented = {n.replace("node-i", f"node-{i}") for n in names for i in (1, 2, 3)}
    _code, doc = _status()
    assert documented == set(_rows(doc)), (sorted(documented - set(_rows(doc))), sorted(set(_rows(doc)) - documented))


def test_status_resources_splits_the_memory_of_everything_up_started(cluster: None) -> None:
    proc = run("status", "--resources", "-o", "json", check=False, timeout=180)
    usage = json.loads(proc.stdout)["resources"]
    processes = {p["name"]: p for p in usage["processes"]}
    assert {"etcd", "registry", "builder", "ray-head", "node-1/docker", "node-3/raylet"} <= set(processes)
    assert all(p["pss_bytes"] > 0 and p["processes"] >= 1 for p in processes.values()), processes
    assert usage["total_bytes"] == sum(p["pss_bytes"] for p in processes.values())
    # a raylet's tree holds its node's actors (their workers); the head's holds the control plane's
    assert processes["node-1/raylet"]["processes"] >= 4 and processes["ray-head"]["processes"] >= 6
    actors = {a["name"]: a for a in usage["actors"]}
    assert {"apiserver", "kubelet-node-2"} <= set(actors) and all(a["pss_bytes"] > 0 for a in actors.values())
    table = run("status", "--resources", check=False, timeout=180).stdout
    assert "memory (PSS; containers not counted):" in table and "GB budget" in table


def test_a_component_that_stops_answering_is_reported_unhealthy(cluster: None) -> None:
    """Freeze the scheduler's process (SIGSTOP): its health check gets no answer, so status says so."""
    _code, doc = _status()
    pid = int(_rows(doc)["scheduler"]["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        code, doc = _status()
        row = _rows(doc)["scheduler"]
        assert code == 1 and not doc["healthy"]
        assert not row["healthy"] and "no answer to the health check" in row["detail"], row
        assert _rows(doc)["controller-manager"]["healthy"]  # the others are asked on their own
        text = run("status", check=False, timeout=180)
        assert text.returncode == 1
        assert any(line.split()[:2] == ["scheduler", "UNHEALTHY"] for line in text.stdout.splitlines()), text.stdout
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("the scheduler to answer again", lambda: _rows(_status()[1])["scheduler"]["healthy"], timeout=60)
