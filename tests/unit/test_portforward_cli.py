"""`minik8s port-forward` argument handling (no cluster)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import cli
from cli.portforward import PortPair, _service_target, parse_port_pairs
from minik8s.errors import BadRequest


def test_port_forms_as_kubectl_takes_them() -> None:
    assert parse_port_pairs(("8080", "18080:80", ":9090", "5000:http")) == [
        PortPair(8080, "8080"), PortPair(18080, "80"), PortPair(0, "9090"), PortPair(5000, "http")]


@pytest.mark.parametrize("spec", ["abc:80", "80:", "70000:80"])
def test_bad_port_forms_are_refused(spec: str) -> None:
    with pytest.raises(BadRequest, match="invalid port specification"):
        parse_port_pairs((spec,))


def test_bad_port_form_is_one_line_and_exit_1() -> None:
    result = CliRunner().invoke(cli, ["port-forward", "web", "x:80"])
    assert result.exit_code == 1
    assert result.output.strip() == 'error: invalid port specification "x:80": use LOCAL:REMOTE, REMOTE or :REMOTE'


def test_service_port_maps_to_target_port_by_number_or_container_port_name() -> None:
    service = {"metadata": {"name": "web"}, "spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": "web"}, {"name": "admin", "port": 81, "targetPort": 9000}]}}
    pod = {"metadata": {"name": "web-1"}, "spec": {"containers": [{"ports": [{"name": "web", "containerPort": 8080}]}]}}
    assert _service_target(service, pod, "80") == 8080
    assert _service_target(service, pod, "http") == 8080
    assert _service_target(service, pod, "81") == 9000
    with pytest.raises(BadRequest, match="does not have a service port 82"):
        _service_target(service, pod, "82")
