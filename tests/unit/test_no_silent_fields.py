"""No silent fields: every field the API accepts on a Pod, a pod template or a workload spec is read by
code that acts on objects.

Accepting a field and ignoring it is the worst kind of bug: the user believes a setting
took effect. This test walks the pydantic models the API server accepts (PodSpec and all
under it, ObjectMeta, and the specs of Service, Deployment, ReplicaSet, DaemonSet, Job and
CronJob) and, for every field name, requires a consumer module (kubelet, scheduler,
controllers, proxy, dns, apiserver, registry, ... — anything under `minik8s/` but the
API package's model, validation and printing modules) to read it, either as an attribute
(`.field`) or as a string literal equal to the wire name (`"field"`). Sources are
tokenized, so a mention in a comment or a docstring does not count.

A field may be exempt only through one of the allowlists below, each entry with its reason.
"""

from __future__ import annotations

import io
import tokenize
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from pydantic import BaseModel

from minik8s.api import apps, batch, daemonsets, replication, services
from minik8s.api import types as t

ROOT = Path(__file__).resolve().parents[2] / "minik8s"

#: Modules of the API package that define, validate or print models: a field read only here is not acted on.
NOT_CONSUMERS = {
    "api/types.py", "api/apps.py", "api/batch.py", "api/daemonsets.py", "api/services.py",
    "api/replication.py", "api/validation.py", "api/printers.py", "api/networking.py",
    "api/policy.py", "api/autoscaling.py", "api/rbac.py", "api/config.py", "api/scheduling.py",
    "api/dns.py", "api/kinds.py", "api/strategy.py", "api/lastapplied.py", "api/mergekeys.py",
}

#: The accepted schema's roots: what a user writes and the cluster must honour.
ROOTS: list[type[BaseModel]] = [
    t.PodSpec, t.ObjectMeta, services.ServiceSpec, apps.DeploymentSpec, apps.ReplicaSetSpec,
    daemonsets.DaemonSetSpec, batch.JobSpec, batch.CronJobSpec, replication.ReplicationControllerSpec,
]

#: Fields whose every accepted value is enforced by the API package itself (unsupported values refused,
#: the rest defaulted), so there is nothing left for a consumer to do.
REFUSED_OR_DEFAULTED: dict[str, str] = {
    "JobSpec.manualSelector": "the API server's Job strategy generates the selector unless it is true (api/batch.py)",
    "SeccompProfile.localhostProfile": "type Localhost is refused in validation, and the field without it",
    "ServiceSpec.ipFamilies": "defaulted to [IPv4]; IPv6 and two families refused (single-stack cluster)",
    "ServiceSpec.ipFamilyPolicy": "defaulted to SingleStack; RequireDualStack refused (single-stack cluster)",
}

#: Fields Kubernetes itself only stores (no component acts on them).
STORED_ONLY: dict[str, str] = {
    "ObjectMeta.managedFields": "server-side-apply bookkeeping; stored and returned",
    "ServicePort.appProtocol": "a hint for implementations and users; kube-proxy ignores it",
}

EXEMPT = {**REFUSED_OR_DEFAULTED, **STORED_ONLY}


def _models_under(annotation: object) -> Iterator[type[BaseModel]]:
    """Every pydantic model named anywhere in a field's annotation (lists, dicts, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_under(arg)


def accepted_fields() -> list[tuple[str, str]]:
    """(`Model.field`, wire name) for every field reachable from ROOTS, each model once."""
    seen: set[type[BaseModel]] = set()
    todo = list(ROOTS)
    out: list[tuple[str, str]] = []
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            wire = info.alias or name
            out.append((f"{model.__name__}.{wire}", wire))
            todo.extend(_models_under(info.annotation))
    return sorted(out)


def _read_names(source: str) -> set[str]:
    """Names a module reads: attributes after a dot and exact string literals (comments and docstrings don't count)."""
    names: set[str] = set()
    prev: tokenize.TokenInfo | None = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and prev is not None and prev.type == tokenize.OP and prev.string == ".":
            names.add(tok.string)
        elif tok.type == tokenize.STRING:
            body = tok.string.lstrip("rbuRBU")
            for quote in ('"""', "'''", '"', "'"):
                if body.startswith(quote) and body.endswith(quote) and len(body) >= 2 * len(quote):
                    names.add(body[len(quote):-len(quote)])
                    break
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            prev = tok
    return names


@cache
def consumer_reads() -> frozenset[str]:
    """Union of the names read by every consumer module under minik8s/."""
    names: set[str] = set()
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in NOT_CONSUMERS:
            continue
        names |= _read_names(path.read_text())
    return frozenset(names)


def test_every_accepted_field_is_read_or_exempt() -> None:
    reads = consumer_reads()
    silent = [qual for qual, wire in accepted_fields() if wire not in reads and qual not in EXEMPT]
    assert not silent, (
        "fields the API accepts but no component reads (implement them, refuse them in validation naming the "
        f"field, or allowlist them with a reason): {silent}"
    )


def test_exemptions_are_not_stale() -> None:
    """An allowlisted field that a consumer now reads, or that the API no longer accepts, must leave the list."""
    reads = consumer_reads()
    accepted = {qual: wire for qual, wire in accepted_fields()}
    stale = [q for q in EXEMPT if q not in accepted or accepted[q] in reads]
    assert not stale, f"allowlist entries that are read now or no longer accepted: {stale}"


def test_read_names_ignores_comments_and_docstrings() -> None:
    src = '"""mentions tolerationSeconds"""\n# x.sizeLimit\nx = spec.medium\ny = d["ipFamilies"]\n'
    names = _read_names(src)
    assert {"medium", "ipFamilies"} <= names
    assert "sizeLimit" not in names and "tolerationSeconds" not in names


@pytest.mark.parametrize("root", ROOTS, ids=lambda m: m.__name__)
def test_walk_reaches_every_root(root: type[BaseModel]) -> None:
    quals = {q for q, _ in accepted_fields()}
    assert any(q.startswith(f"{root.__name__}.") for q in quals)
