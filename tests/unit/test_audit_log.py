"""The audit log: Event-shaped lines for mutating requests, rotation by size, and `minik8s audit tail`."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cli.audit import audit
from minik8s import auth
from minik8s.apiserver.audit import AuditLog, event_for, read_lines
from minik8s.auth.user import UserInfo


def scope(method: str, path: str, query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query, "client": ("10.0.0.7", 5555),
            "headers": [(b"user-agent", b"kubectl/v1.32")],
            auth.SCOPE_KEY: UserInfo("alice", ("devs", "system:authenticated"))}


def test_event_names_user_verb_object_and_code() -> None:
    ev = event_for(scope("DELETE", "/apis/apps/v1/namespaces/team/deployments/web", b"dryRun=All"), 200, "t0")
    assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["kind"] == "Event" and ev["level"] == "Metadata"
    assert ev["verb"] == "delete" and ev["user"] == {"username": "alice", "groups": ["devs", "system:authenticated"]}
    assert ev["objectRef"] == {"resource": "deployments", "namespace": "team", "name": "web", "apiGroup": "apps",
                               "apiVersion": "v1"}
    assert ev["responseStatus"]["code"] == 200 and ev["sourceIPs"] == ["10.0.0.7"]
    assert ev["requestURI"] == "/apis/apps/v1/namespaces/team/deployments/web?dryRun=All"
    created = event_for(scope("POST", "/api/v1/namespaces/team/pods"), 201, "t0", "generated-x1")
    assert created["verb"] == "create" and created["objectRef"]["name"] == "generated-x1"
    assert event_for(scope("DELETE", "/api/v1/namespaces/team/pods"), 200, "t0")["verb"] == "deletecollection"


def test_log_rotates_by_size_and_keeps_n_private_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.log"
    log = AuditLog(path, max_bytes=600, backups=2)
    for i in range(30):
        log.record({"n": i, "pad": "x" * 80})
    log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in path.parent.iterdir())
    assert all(p.stat().st_size <= 600 for p in path.parent.iterdir())
    last = [json.loads(line)["n"] for line in read_lines(path, 8)]
    assert last == list(range(22, 30))  # the newest, reaching into audit.log.1 when needed


def test_audit_tail_prints_the_latest_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for code, name in ((201, "a"), (403, "b")):
        log.record(event_for(scope("PUT", f"/api/v1/namespaces/team/pods/{name}"), code, "2026-01-01T00:00:00Z"))
    log.close()
    out = CliRunner().invoke(audit, ["tail", "-n", "1", "--file", str(path)])
    assert out.exit_code == 0, out.output
    header, row = out.output.splitlines()
    assert header.split() == ["TIME", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE"]
    assert row.split() == ["2026-01-01T00:00:00Z", "alice", "update", "pods", "team", "b", "403"]
    raw = CliRunner().invoke(audit, ["tail", "-n", "2", "-o", "json", "--file", str(path)])
    assert [json.loads(line)["objectRef"]["name"] for line in raw.output.splitlines()] == ["a", "b"]
    missing = CliRunner().invoke(audit, ["tail", "--file", str(tmp_path / "none.log")])
    assert missing.exit_code != 0
