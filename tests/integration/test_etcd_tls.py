"""etcd over TLS with client certificates: a real etcd on 127.0.0.1 serving https only to clients holding a
certificate from the cluster CA (`--client-cert-auth --trusted-ca-file`), and the store, the API server and
`up`'s health probe reaching it with the etcd client certificate the cluster CA issues (and nothing else)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from minik8s.cluster import etcd_choice
from minik8s.errors import Unavailable
from minik8s.pki import Pki, ensure_pki, issue_etcd_server
from minik8s.store import EtcdStore
from minik8s.store.failover import EtcdTLS, FailoverConfig
from tests.conftest import ETCD_START_TIMEOUT_S, free_port, uniq, wait_for

FAST = FailoverConfig(attempt_timeout_s=1.0, window_s=2.0)


@dataclass
class TlsEtcd:
    url: str
    pki: Pki
    tls: EtcdTLS  # the cluster CA and the API server's etcd client certificate
    state_dir: Path  # a cluster state dir whose pki/ is the CA the member trusts


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEtcd]:
    """etcd serving https on a free loopback port, with a serving certificate from the cluster CA and
    requiring client certificates from it; its peer URL stays plain on loopback (one member)."""
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed: run `make install` (Debian package etcd-server)")
    data = tmp_path_factory.mktemp("etcd-tls")
    pki = ensure_pki(data / "pki", ["127.0.0.1"], ["localhost"])  # where a cluster with state dir `data` has it
    server_key, server_cert = data / "etcd-server.key", data / "etcd-server.crt"
    issue_etcd_server(pki, server_key, server_cert, ["IP:127.0.0.1", "DNS:localhost"])
    port, peer = free_port(), f"http://127.0.0.1:{free_port()}"
    url = f"https://127.0.0.1:{port}"
    proc = subprocess.Popen(
        ["etcd", "--name", "tls", "--data-dir", str(data / "member"), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"tls={peer}", "--client-cert-auth", "--trusted-ca-file", str(pki.ca_cert),
         "--cert-file", str(server_cert), "--key-file", str(server_key)],
        stdout=subprocess.DEVNULL, stderr=open(data / "etcd.log", "wb"))
    tls = EtcdTLS(str(pki.ca_cert), str(pki.etcd_client_cert), str(pki.etcd_client_key))
    try:
        def healthy() -> bool:
            assert proc.poll() is None, (data / "etcd.log").read_text()[-2000:]
            return etcd_choice.member_health(url, tls).healthy

        wait_for(healthy, ETCD_START_TIMEOUT_S)
        yield TlsEtcd(url, pki, tls, data)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_store_reads_writes_and_watches_with_the_cluster_client_certificate(tls_etcd: TlsEtcd) -> None:
    store = EtcdStore([tls_etcd.url], tls=tls_etcd.tls)
    try:
        key = f"/registry/configmaps/default/{uniq('tls')}"
        seen: list[str] = []
        cancel = store.watch(key, store.revision() + 1, lambda ev: seen.append(ev.type))
        created = store.create(key, {"metadata": {"name": "x"}, "data": {"a": "1"}})
        assert store.get(key)["data"] == {"a": "1"}
        assert int(created["metadata"]["resourceVersion"]) > 0
        wait_for(lambda: seen == ["ADDED"])
        cancel()
    finally:
        store.close()


@pytest.mark.parametrize("who", ["no client certificate", "a certificate from another CA", "plain http"])
def test_etcd_refuses_everyone_else(tls_etcd: TlsEtcd, tmp_path: Path, who: str) -> None:
    url, tls = tls_etcd.url, EtcdTLS(tls_etcd.tls.ca_file)
    if who == "a certificate from another CA":
        other = ensure_pki(tmp_path / "other", ["127.0.0.1"], [])
        tls = EtcdTLS(tls_etcd.tls.ca_file, str(other.etcd_client_cert), str(other.etcd_client_key))
    elif who == "plain http":
        url = url.replace("https://", "http://")
    store = EtcdStore([url], failover=FAST, tls=tls)
    try:
        with pytest.raises(Unavailable):
            store.get("/registry/namespaces/default")
    finally:
        store.close()
    assert not etcd_choice.member_health(url, tls).healthy  # `up` refuses to start on it, naming it
    with pytest.raises(Unavailable, match=url) as refused:
        etcd_choice.check_reachable([url], tls)
    if tls.cert_file:
        assert "--client-cert-auth --trusted-ca-file" in str(refused.value.message)


def test_the_http_gateway_refuses_a_client_without_a_certificate(tls_etcd: TlsEtcd) -> None:
    """What a pod that reached the port would get: no TLS session, so no key read and no write."""
    anonymous = EtcdTLS(tls_etcd.tls.ca_file).ssl_context()  # trusts the member, shows no certificate
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{tls_etcd.url}/v3/kv/range", json={"key": "Lw=="}, verify=anonymous, timeout=5)
    ok = httpx.post(f"{tls_etcd.url}/v3/kv/range", json={"key": "Lw=="}, verify=tls_etcd.tls.ssl_context(), timeout=5)
    assert ok.status_code == 200


def test_the_api_server_keeps_its_objects_in_the_tls_etcd(tls_etcd: TlsEtcd) -> None:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    cfg = ApiServerConfig(etcd_endpoints=[tls_etcd.url], token=None, port=port, etcd_cafile=tls_etcd.tls.ca_file,
                          etcd_certfile=tls_etcd.tls.cert_file, etcd_keyfile=tls_etcd.tls.key_file)
    server = ServerThread(ApiServer(cfg).app, ["127.0.0.1"], port, name="test-etcd-tls")
    server.start()
    name = uniq("tls")
    try:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        resp = httpx.post(f"http://127.0.0.1:{port}/api/v1/namespaces", json=body, timeout=10)
        assert resp.status_code == 201, resp.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/namespaces/{name}", timeout=10).status_code == 200
    finally:
        server.stop()
    store = EtcdStore([tls_etcd.url], tls=tls_etcd.tls)
    try:
        assert store.get(f"/registry/namespaces/{name}")["metadata"]["name"] == name  # in that etcd, really
    finally:
        store.close()


def test_up_uses_the_cluster_ca_and_its_etcd_client_certificate_by_default(tls_etcd: TlsEtcd) -> None:
    """What `up --etcd-endpoints https://...` does without TLS flags: the cluster's own files, probed before
    anything starts, recorded, and handed to the API server's settings."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.cluster import bootstrap, local
    from minik8s.cluster.config import ClusterConfig

    cfg = ClusterConfig(state_dir=tls_etcd.state_dir)
    external = etcd_choice.choose(cfg, [tls_etcd.url])
    tls = etcd_choice.choose_tls(cfg, external, None)
    assert tls == tls_etcd.tls
    etcd_choice.check_reachable(external, tls)  # what start_control_plane probes first
    etcd_choice.record(cfg, external, tls)
    try:
        settings = bootstrap._etcd_tls_settings(cfg)
        assert settings == {"etcd_cafile": tls.ca_file, "etcd_certfile": tls.cert_file, "etcd_keyfile": tls.key_file}
        rows = {r.component: r for r in local.external_etcd_rows(cfg)}  # `minik8s status`
        assert rows["etcd-0"].healthy, rows["etcd-0"].detail
        api = ApiServer(ApiServerConfig(etcd_endpoints=etcd_choice.endpoints(cfg), token=None, **settings))
        try:
            assert api.store.revision() > 0  # the API server's store reaches the member with those files
        finally:
            api.store.close()
    finally:
        etcd_choice.record(cfg, [])

