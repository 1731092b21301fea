"""label / annotate / wait / get -L argument handling, and the CLI's lazy imports (no cluster)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cli.main import cli
from cli.metadata import MetadataChanges, compute_patch, outcome, split_args, validate_labels
from cli.resources import label_columns
from cli.wait import FOREVER_S, parse_duration, parse_for, parse_targets
from minik8s.errors import BadRequest


def test_label_args_split_objects_from_changes() -> None:
    targets, changes = split_args(("pods", "web", "db", "tier=front", "old-"), "label")
    assert (targets.kind, targets.names) == ("pods", ["web", "db"])
    assert changes.set == {"tier": "front"} and changes.remove == ["old"]
    targets, _ = split_args(("po/web", "pod/db", "a=b"), "label")
    assert (targets.kind, targets.names) == ("po", ["web", "db"])


@pytest.mark.parametrize(("args", "message"), [
    (("pods", "web"), "at least one label update is required"),
    (("pods", "web", "a=b", "db"), "all resources must be specified before label changes: db"),
    (("pods", "web", "a=b", "a-"), "can not both modify and remove"),
    (("pod/web", "deploy/x", "a=b"), "one kind per command"),
    (("=b",), "the key is empty"),
])
def test_label_args_refused(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(click.UsageError, match=message):
        split_args(args, "label")


def test_label_overwrite_refused_with_kubectl_message() -> None:
    changes = MetadataChanges(set={"tier": "back"})
    with pytest.raises(BadRequest, match=r"'tier' already has a value \(front\), and --overwrite is false"):
        compute_patch({"tier": "front"}, changes, overwrite=False, verb="label")
    patch, _ = compute_patch({"tier": "front"}, changes, overwrite=True, verb="label")
    assert patch == {"tier": "back"}


def test_annotate_overwrite_message_and_change_cause_exemption() -> None:
    with pytest.raises(BadRequest, match="--overwrite is false but found the following declared annotation"):
        compute_patch({"a": "1"}, MetadataChanges(set={"a": "2"}), overwrite=False, verb="annotation")
    patch, _ = compute_patch({"kubernetes.io/change-cause": "x"},
                             MetadataChanges(set={"kubernetes.io/change-cause": "y"}), False, "annotation")
    assert patch == {"kubernetes.io/change-cause": "y"}


def test_patch_removes_present_keys_and_reports_missing() -> None:
    patch, missing = compute_patch({"a": "1", "b": "2"}, MetadataChanges(set={"b": "2"}, remove=["a", "zz"]),
                                   overwrite=False, verb="label")
    assert patch == {"a": None} and missing == ["zz"]
    assert outcome(patch, "label") == "unlabeled"
    assert outcome({}, "label") == "not labeled"
    assert outcome({"x": "1", "a": None}, "label") == "labeled"


def test_invalid_label_refused() -> None:
    with pytest.raises(BadRequest, match="not a valid label value"):
        validate_labels(MetadataChanges(set={"tier": "no spaces"}))
    with pytest.raises(BadRequest, match="not a valid label key"):
        validate_labels(MetadataChanges(set={"-bad": "x"}))


def test_label_cli_usage_errors_exit_2_before_any_request() -> None:
    result = CliRunner().invoke(cli, ["label", "pods", "web"])
    assert result.exit_code == 2 and "at least one label update is required" in result.output
    result = CliRunner().invoke(cli, ["annotate", "pods", "web", "a=b", "extra"])
    assert result.exit_code == 2 and "all resources must be specified before annotation changes" in result.output


def test_label_columns_headers_and_cells() -> None:
    cols = label_columns(("app,tier", "app.kubernetes.io/name"), show_labels=True)
    assert cols.headers() == ["APP", "TIER", "NAME", "LABELS"]
    obj = {"metadata": {"labels": {"tier": "db", "app": "web"}}}
    assert cols.cells(obj) == ["web", "db", "", "app=web,tier=db"]
    assert label_columns((), True).cells({"metadata": {}}) == ["<none>"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("0", 0.0),
                                               ("1h", 3600.0), ("-1s", FOREVER_S)])
def test_wait_timeout_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "abc", "10x", "", "1m30"])
def test_wait_bad_timeout(text: str) -> None:
    with pytest.raises(click.BadParameter, match="invalid duration"):
        parse_duration(text)


def test_wait_for_conditions() -> None:
    ready = parse_for("condition=Ready")
    pod = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert ready.met(pod) and not ready.met(None) and not ready.met({"status": {}})
    not_ready = parse_for("condition=ready=false")
    assert not not_ready.met(pod)
    assert not_ready.met({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert parse_for("delete").met(None) and not parse_for("delete").met(pod)
    assert parse_for("create").met(pod)


def test_wait_for_jsonpath() -> None:
    phase = parse_for("jsonpath={.status.phase}=Running")
    assert phase.met({"status": {"phase": "Running"}}) and not phase.met({"status": {"phase": "Pending"}})
    quoted = parse_for("jsonpath='{.status.containerStatuses[0].ready}'=true")
    assert quoted.met({"status": {"containerStatuses": [{"ready": True}]}})
    assert not quoted.met({"status": {"containerStatuses": []}})


@pytest.mark.parametrize("text", ["condition", "condition=", "jsonpath={.a}", "jsonpath={status}=x", "ready"])
def test_wait_bad_for(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_for(text)


def test_wait_targets() -> None:
    assert parse_targets(("pod/web", "pod/db")) == ("pod", ["web", "db"])
    assert parse_targets(("deploy", "web")) == ("deploy", ["web"])
    assert parse_targets(("pods",)) == ("pods", [])
    with pytest.raises(click.UsageError):
        parse_targets(("pods", "deploy/web"))
    result = CliRunner().invoke(cli, ["wait", "pod/web", "--for=ready"])
    assert result.exit_code == 2 and "--for" in result.output


def _leaf_verbs(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    leaves: list[tuple[str, ...]] = []
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        if isinstance(command, click.Group):
            leaves += _leaf_verbs(command, (*prefix, name))
        else:
            leaves.append((*prefix, name))
    return leaves


def test_every_verb_has_help_with_an_example() -> None:
    runner = CliRunner()
    verbs = _leaf_verbs(cli)
    assert {("label",), ("annotate",), ("wait",), ("get",)} <= set(verbs)
    for verb in verbs:
        result = runner.invoke(cli, [*verb, "--help"])
        assert result.exit_code == 0, verb
        assert "Example" in result.output, verb


def test_get_imports_no_ray_or_docker() -> None:
    """`minik8s get` resolves and shows help without importing Ray, Docker, pyroute2 or the API server."""
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from cli.main import cli\n"
            "r = CliRunner().invoke(cli, ['get', '--help'])\n"
            "assert r.exit_code == 0, r.output\n"
            "heavy = sorted(m for m in ('ray', 'docker', 'pyroute2', 'fastapi', 'uvicorn') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
