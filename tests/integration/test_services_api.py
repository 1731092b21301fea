"""Services against the in-process API server: ClusterIP/NodePort allocation, clashes, immutability,
and the endpoints controller following pods whose status the test sets by hand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client, errors
from minik8s.controllers.endpoints import EndpointsController
from tests.conftest import uniq, wait_for


def svc(name: str, **spec: Any) -> dict[str, Any]:
    body = {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def test_cluster_ip_allocated_defaulted_and_printed(client: Client) -> None:
    name = uniq("s")
    created = client.create(svc(name))
    ip = created.spec.clusterIP
    assert ip.startswith("10.96.") and ip not in ("10.96.0.0", "10.96.0.1", "10.96.0.10")
    assert created.spec.clusterIPs == [ip]
    assert created.spec.type == "ClusterIP" and created.spec.sessionAffinity == "None"
    assert created.spec.ports[0].protocol == "TCP"
    assert created.status.loadBalancer is not None
    table = client.request("GET", f"/api/v1/namespaces/default/services/{name}",
                           headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    cells = table["rows"][0]["cells"]
    assert cells[:5] == [name, "ClusterIP", ip, "<none>", "80/TCP"]


def test_requested_ip_and_clash(client: Client) -> None:
    a, b = uniq("s"), uniq("s")
    client.create(svc(a, clusterIP="10.96.200.7"))
    with pytest.raises(errors.MiniK8sError, match="provided IP is already allocated"):
        client.create(svc(b, clusterIP="10.96.200.7"))
    with pytest.raises(errors.MiniK8sError, match="not in the valid range"):
        client.create(svc(b, clusterIP="10.97.0.5"))
    dns = client.create(svc(uniq("dns"), clusterIP="10.96.0.10"))  # reserved, but may be asked for
    assert dns.spec.clusterIP == "10.96.0.10"
    client.delete("Service", dns.metadata.name)
    client.delete("Service", a)
    assert client.create(svc(b, clusterIP="10.96.200.7")).spec.clusterIP == "10.96.200.7"  # released
    client.delete("Service", b)


def test_node_port_allocation_clash_and_immutability(client: Client) -> None:
    a, b = uniq("np"), uniq("np")
    first = client.create(svc(a, type="NodePort"))
    port = first.spec.ports[0].nodePort
    assert 30000 <= port <= 32767
    with pytest.raises(errors.MiniK8sError, match=f'already allocated \\(to service "default/{a}"\\)'):
        client.create(svc(b, type="NodePort", ports=[{"port": 80, "nodePort": port}]))
    with pytest.raises(errors.MiniK8sError, match="valid range"):
        client.create(svc(b, type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    # PUT without the allocations keeps them; changing them is refused
    body = first.to_dict()
    body["spec"].pop("clusterIP")
    body["spec"].pop("clusterIPs")
    body["spec"]["ports"][0].pop("nodePort")
    body["spec"]["selector"] = {"app": "other"}
    updated = client.update(body)
    assert updated.spec.clusterIP == first.spec.clusterIP and updated.spec.ports[0].nodePort == port
    bad = updated.to_dict()
    bad["spec"]["clusterIP"] = bad["spec"]["clusterIPs"][0] = "10.96.201.1"
    with pytest.raises(errors.MiniK8sError, match="immutable"):
        client.update(bad)
    bad = updated.to_dict()
    bad["spec"]["ports"][0]["nodePort"] = port + 1 if port < 32767 else port - 1
    with pytest.raises(errors.MiniK8sError, match="immutable"):
        client.update(bad)
    client.delete("Service", a)
    assert client.create(svc(b, type="NodePort", ports=[{"port": 80, "nodePort": port}])).spec.ports[0].nodePort == port
    client.delete("Service", b)


def test_validation_names_the_field(client: Client) -> None:
    name = uniq("s")
    with pytest.raises(errors.MiniK8sError, match=r"spec.ports\[1\].name: Required value"):
        client.create(svc(name, ports=[{"port": 80}, {"port": 81}]))
    with pytest.raises(errors.MiniK8sError, match=r"spec.ports\[0\].port"):
        client.create(svc(name, ports=[{"port": 70000}]))
    with pytest.raises(errors.MiniK8sError, match=r"spec.ports\[0\].protocol"):
        client.create(svc(name, ports=[{"port": 80, "protocol": "ICMP"}]))
    with pytest.raises(errors.MiniK8sError, match=r"spec.ports\[1\].name: Duplicate"):
        client.create(svc(name, ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]))


# --- the endpoints controller ------------------------------------------------------------------

@pytest.fixture
def controller(client: Client) -> Iterator[EndpointsController]:
    ctl = EndpointsController(client)
    ctl.start()
    yield ctl
    ctl.stop()


def make_pod(client: Client, name: str, app: str, ip: str | None, ready: bool, port_name: str | None = "http") -> None:
    ports = [{"containerPort": 8080, **({"name": port_name} if port_name else {})}]
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
                   "spec": {"containers": [{"name": "c", "image": "busybox", "ports": ports}]}})
    set_status(client, name, ip, ready)


def set_status(client: Client, name: str, ip: str | None, ready: bool) -> None:
    pod = client.get("Pod", name).to_dict()
    pod["status"] = {"phase": "Running", **({"podIP": ip} if ip else {}),
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    client.update_status(pod)


def ep_ips(client: Client, name: str) -> tuple[list[str], list[str], list[int]]:
    try:
        ep = client.get("Endpoints", name).to_dict()
    except errors.NotFound:
        return [], [], []
    subsets = ep.get("subsets") or []
    ready = sorted(a["ip"] for s in subsets for a in s.get("addresses") or [])
    not_ready = sorted(a["ip"] for s in subsets for a in s.get("notReadyAddresses") or [])
    ports = sorted(p["port"] for s in subsets for p in s.get("ports") or [])
    return ready, not_ready, ports


def test_endpoints_follow_pods(client: Client, controller: EndpointsController) -> None:
    app = uniq("web")
    client.create(svc(app, ports=[{"port": 80, "targetPort": "http"}]))
    make_pod(client, f"{app}-1", app, "10.244.1.3", ready=True)
    make_pod(client, f"{app}-2", app, "10.244.2.3", ready=False)
    make_pod(client, f"{app}-3", app, None, ready=False)  # no IP yet: nowhere
    make_pod(client, f"{app}-4", app, "10.244.2.4", ready=True, port_name=None)  # lacks the named port
    wait_for(lambda: ep_ips(client, app) == (["10.244.1.3"], ["10.244.2.3"], [8080]))
    t0 = time.monotonic()
    set_status(client, f"{app}-2", "10.244.2.3", ready=True)
    wait_for(lambda: ep_ips(client, app)[0] == ["10.244.1.3", "10.244.2.3"], timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    rv = client.get("Endpoints", app).metadata.resourceVersion
    set_status(client, f"{app}-1", "10.244.1.3", ready=True)  # no change for the Endpoints
    time.sleep(0.3)
    assert client.get("Endpoints", app).metadata.resourceVersion == rv
    events = [e for e in client.list("Event", "default").items if e.involvedObject.name == app]
    assert any(e.reason == "FailedToResolvePort" and f"{app}-4" in (e.message or "") for e in events)
    table = client.request("GET", f"/api/v1/namespaces/default/endpoints/{app}",
                           headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert table["rows"][0]["cells"][1] == "10.244.1.3:8080,10.244.2.3:8080"
    client.delete("Pod", f"{app}-1", grace_period_seconds=0)
    wait_for(lambda: ep_ips(client, app)[0] == ["10.244.2.3"], timeout=1.0)
    client.delete("Service", app)
    wait_for(lambda: ep_ips(client, app) == ([], [], []))
