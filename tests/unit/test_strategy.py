"""Kinds plug in: the generic store never names a kind, strategies and the admission chain do the rest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from minik8s.api import kinds as k
from minik8s.api.strategy import Strategy, defaults_only
from minik8s.apiserver.admission import AdmissionChain, AdmissionRequest, ServiceAccountDefault, default_chain
from minik8s.errors import Forbidden

GENERIC = [Path(k.__file__).parents[1] / "apiserver" / name for name in ("resources.py", "app.py")]


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: p.name)
def test_generic_rest_code_never_branches_on_a_kind(path: Path) -> None:
    source = path.read_text()
    assert not re.search(r"\.kind\s*(==|!=|in|not in)\s", source), "kind-specific branch in generic code"
    for info in k.KINDS:
        assert f'DEFAULTERS["{info.kind}"]' not in source


def test_every_kind_has_a_strategy_factory() -> None:
    for info in k.KINDS:
        assert issubclass(info.strategy, Strategy), info.kind


def test_defaults_only_fills_on_create_and_update() -> None:
    factory = defaults_only(lambda obj: obj.setdefault("spec", {}).setdefault("x", 1))
    strategy = factory(None)  # type: ignore[arg-type]
    obj: dict[str, Any] = {}
    strategy.prepare_for_create(obj)
    assert obj == {"spec": {"x": 1}}
    new: dict[str, Any] = {"spec": {}}
    strategy.prepare_for_update(new, obj)
    assert new == {"spec": {"x": 1}}


class _Recorder:
    def __init__(self, name: str, log: list[str], change: bool = False, refuse: bool = False) -> None:
        self.name, self.log, self.change, self.refuse = name, log, change, refuse

    def handles(self, req: AdmissionRequest) -> bool:
        return True

    def admit(self, req: AdmissionRequest) -> None:
        self.log.append(self.name)
        if self.change:
            req.obj.setdefault("metadata", {}).setdefault("labels", {})[self.name] = "x"
        if self.refuse:
            raise Forbidden(f"{self.name} says no")


def _req(obj: dict[str, Any]) -> AdmissionRequest:
    return AdmissionRequest("CREATE", k.lookup("Pod"), obj)


def test_chain_runs_mutating_in_order_then_validating() -> None:
    log: list[str] = []
    chain = AdmissionChain(mutating=[_Recorder("m1", log, change=True), _Recorder("m2", log)],
                           validating=[_Recorder("v1", log)])
    req = _req({"metadata": {"name": "p"}})
    assert chain.mutate(req) is True
    chain.validate(req)
    assert log == ["m1", "m2", "v1"]
    assert req.obj["metadata"]["labels"] == {"m1": "x"}


def test_chain_reports_no_change_and_validating_plugins_refuse() -> None:
    log: list[str] = []
    chain = AdmissionChain(mutating=[_Recorder("m", log)], validating=[_Recorder("v", log, refuse=True)])
    req = _req({"metadata": {"name": "p"}})
    assert chain.mutate(req) is False
    with pytest.raises(Forbidden, match="v says no"):
        chain.validate(req)


def test_service_account_defaulting() -> None:
    plugin = ServiceAccountDefault()
    req = _req({"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert plugin.handles(req)
    plugin.admit(req)
    assert req.obj["spec"]["serviceAccountName"] == "default"
    req = _req({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "builder"}})
    plugin.admit(req)
    assert req.obj["spec"]["serviceAccountName"] == "builder"
    assert not plugin.handles(AdmissionRequest("CREATE", k.lookup("Service"), {}))
    assert "ServiceAccount" in default_chain().names()
