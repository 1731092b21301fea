"""Which etcd a cluster uses, as recorded in its state dir, and how `up --etcd-endpoints` treats it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import cluster as cli_cluster
from cli.main import cli
from minik8s.cluster import etcd_choice
from minik8s.cluster.config import STATE_DIR_ENV, ClusterConfig
from minik8s.errors import BadRequest
from minik8s.pki import cert_subject
from minik8s.store.failover import EtcdTLS

A = ["http://10.9.0.1:2379", "http://10.9.0.2:2379", "http://10.9.0.3:2379"]


@pytest.fixture
def cfg(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(state_dir=tmp_path)


def test_nothing_recorded_means_the_managed_etcd(cfg: ClusterConfig) -> None:
    assert etcd_choice.recorded(cfg) is None
    assert etcd_choice.endpoints(cfg) == cfg.etcd_endpoints
    assert not etcd_choice.is_external(cfg)
    assert etcd_choice.choose(cfg, None) == []
    assert etcd_choice.choose(cfg, A) == A  # the first `up` may pick an external etcd


def test_an_external_choice_is_kept_by_a_later_up_without_the_flag(cfg: ClusterConfig) -> None:
    etcd_choice.record(cfg, A)
    assert etcd_choice.recorded(cfg) == A
    assert etcd_choice.endpoints(cfg) == A and etcd_choice.is_external(cfg)
    assert etcd_choice.choose(cfg, None) == A
    assert etcd_choice.choose(cfg, [A[2], A[0], A[1]]) == [A[2], A[0], A[1]]  # same members, other order


def test_moving_to_another_etcd_is_refused(cfg: ClusterConfig) -> None:
    etcd_choice.record(cfg, A)
    with pytest.raises(BadRequest, match="keeps its objects in the etcd at http://10.9.0.1:2379.*down --purge"):
        etcd_choice.choose(cfg, ["http://10.9.0.9:2379"])
    etcd_choice.record(cfg, [])
    assert etcd_choice.recorded(cfg) == [] and etcd_choice.endpoints(cfg) == cfg.etcd_endpoints
    with pytest.raises(BadRequest, match="keeps its objects in the managed etcd"):
        etcd_choice.choose(cfg, A)
    assert etcd_choice.choose(cfg, None) == []


def test_a_file_listing_the_managed_urls_means_managed(cfg: ClusterConfig) -> None:
    (cfg.state_dir / etcd_choice.ETCD_ENDPOINTS_FILE).write_text("\n".join(cfg.etcd_endpoints) + "\n")
    assert etcd_choice.recorded(cfg) == []
    assert not etcd_choice.is_external(cfg)


def _no_start(*_args: Any, **_kw: Any) -> Any:
    raise AssertionError("up must not start anything here")


@pytest.mark.parametrize(("value", "message"), [
    ("ftp://10.9.0.1:2379", "only http:// and https:// endpoints are supported"),
    ("http://10.9.0.1", "is not of the form http(s)://HOST:PORT"),
    ("http://10.9.0.1:2379", '--etcd-endpoints "http://10.9.0.1:2379" is plain HTTP to another machine'),
    ("", "no etcd endpoint given"),
])
def test_up_rejects_bad_endpoints_before_anything_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          value: str, message: str) -> None:
    monkeypatch.setattr(cli_cluster, "_start_control_plane", _no_start)
    result = CliRunner().invoke(cli, ["up", "--etcd-endpoints", value], env={STATE_DIR_ENV: str(tmp_path)})
    assert result.exit_code == 1
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_up_refuses_other_endpoints_than_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_cluster, "_start_control_plane", _no_start)
    cfg = ClusterConfig(state_dir=tmp_path)
    etcd_choice.record(cfg, A)
    before = (tmp_path / etcd_choice.ETCD_ENDPOINTS_FILE).read_text()
    result = CliRunner().invoke(cli, ["up", "--etcd-endpoints", "https://10.9.0.9:2379"],
                                env={STATE_DIR_ENV: str(tmp_path)})
    assert result.exit_code == 1
    assert "error: this cluster keeps its objects in the etcd at" in result.output
    assert (tmp_path / etcd_choice.ETCD_ENDPOINTS_FILE).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [etcd_choice.ETCD_ENDPOINTS_FILE]


def test_up_help_says_how_the_choice_persists() -> None:
    out = CliRunner().invoke(cli, ["up", "--help"]).output
    assert "--etcd-endpoints" in out and "keeps" in out and "never stops it" in out


def test_https_endpoints_get_the_cluster_ca_and_its_etcd_client_certificate(cfg: ClusterConfig) -> None:
    tls_a = [a.replace("http://", "https://") for a in A]
    assert etcd_choice.choose_tls(cfg, A, None) is None  # http:// (recorded before, or loopback): no TLS
    tls = etcd_choice.choose_tls(cfg, tls_a, None)
    pki = cfg.state_dir / "pki"
    assert tls == EtcdTLS(str(pki / "ca.crt"), str(pki / "apiserver-etcd-client.crt"),
                          str(pki / "apiserver-etcd-client.key"))
    assert "CN=kube-apiserver-etcd-client" in cert_subject(pki / "apiserver-etcd-client.crt")
    assert (pki / "apiserver-etcd-client.key").stat().st_mode & 0o077 == 0
    own = etcd_choice.choose_tls(cfg, tls_a, EtcdTLS("/etc/etcd/ca.crt"))  # each flag overrides its default
    assert own == EtcdTLS("/etc/etcd/ca.crt", tls.cert_file, tls.key_file)
    etcd_choice.record(cfg, tls_a, own)
    assert etcd_choice.recorded_tls(cfg) == own  # a later `up` without the flags keeps them
    assert etcd_choice.choose_tls(cfg, tls_a, None) == own
    etcd_choice.record(cfg, [])
    assert etcd_choice.recorded_tls(cfg) is None and not (cfg.state_dir / etcd_choice.ETCD_TLS_FILE).exists()


def test_tls_files_without_https_endpoints_are_refused(cfg: ClusterConfig) -> None:
    with pytest.raises(BadRequest, match="are for https:// --etcd-endpoints"):
        etcd_choice.choose_tls(cfg, ["http://127.0.0.1:2379"], EtcdTLS("/ca.crt"))
    with pytest.raises(BadRequest, match="--etcd-certfile and --etcd-keyfile go together"):
        EtcdTLS(cert_file="/c.crt")
