"""`minik8s auth can-i` and `minik8s auth whoami`: what the API server's authorizer says about you.

Both ask the API (a SelfSubjectAccessReview, a SelfSubjectReview), so the answer is the one every
other request gets. `--as` / `--as-group` impersonate, as kubectl's flags do (the caller needs the
`impersonate` verb on that user or ServiceAccount and on each group).
"""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from cli.common import client
from minik8s.api import kinds as k
from minik8s.errors import BadRequest, NotFound


def impersonation(as_user: str | None, as_groups: tuple[str, ...]) -> dict[str, str]:
    """The Impersonate-* headers; one group at most (the transport sends each header once)."""
    if as_groups and not as_user:
        raise BadRequest("--as-group needs --as (a user to impersonate)")
    if len(as_groups) > 1:
        raise BadRequest(f"--as-group was given {len(as_groups)} times: give one group")
    headers = {"Impersonate-User": as_user} if as_user else {}
    if as_groups:
        headers["Impersonate-Group"] = as_groups[0]
    return headers


def _request(method: str, path: str, body: dict[str, Any], as_user: str | None,
             as_groups: tuple[str, ...]) -> Any:
    headers = impersonation(as_user, as_groups)
    c = client()
    try:
        return c.request(method, path, json=body, headers=headers)
    finally:
        c.close()


def resource_attributes(verb: str, resource: str, name: str | None, namespace: str | None,
                        all_namespaces: bool, subresource: str | None) -> dict[str, Any]:
    """kubectl's `can-i VERB TYPE[/NAME]`: TYPE by any name `get` takes, or a URL path (`/healthz`)."""
    if "/" in resource and not name and not resource.startswith("/"):
        resource, name = resource.split("/", 1)
    try:
        info = k.lookup(resource)
        group, plural, namespaced = info.group, info.plural, info.namespaced
    except NotFound:  # a resource the table does not serve (a review kind, `things.x.io`): ask as given
        plural, _, group = resource.partition(".")
        namespaced = True
    attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": plural}
    if namespaced and not all_namespaces:
        attrs["namespace"] = namespace or "default"
    if name:
        attrs["name"] = name
    if subresource:
        attrs["subresource"] = subresource
    return attrs


@click.group()
def auth() -> None:
    """Inspect authorization.

    \b
    Examples:
      minik8s auth can-i list pods -n kube-system
      minik8s auth can-i get pods --as system:serviceaccount:default:default
      minik8s auth whoami
    """


@auth.command("can-i")
@click.argument("verb")
@click.argument("resource")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace to ask about (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Ask about every namespace.")
@click.option("--subresource", default=None, help="A subresource, e.g. log or status.")
@click.option("--as", "as_user", default=None, help="Ask as this user (impersonation).")
@click.option("--as-group", "as_groups", multiple=True, help="Ask as a member of this group (with --as; once).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code answers.")
def can_i(verb: str, resource: str, name: str | None, namespace: str | None, all_namespaces: bool,
          subresource: str | None, as_user: str | None, as_groups: tuple[str, ...], quiet: bool) -> None:
    """Say yes (exit 0) or no (exit 1): may I VERB RESOURCE [NAME]?

    \b
    Examples:
      minik8s auth can-i create deployments -n dev
      minik8s auth can-i get pods/log
      minik8s auth can-i get /healthz
    """
    if resource.startswith("/"):
        spec: dict[str, Any] = {"nonResourceAttributes": {"verb": verb, "path": resource}}
    else:
        spec = {"resourceAttributes": resource_attributes(verb, resource, name, namespace, all_namespaces,
                                                          subresource)}
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec}
    review = _request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body, as_user, as_groups)
    allowed = bool((review.get("status") or {}).get("allowed"))
    if not quiet:
        click.echo("yes" if allowed else "no")
    if not allowed:
        raise SystemExit(1)


@auth.command()
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default=None, help="Output format.")
@click.option("--as", "as_user", default=None, help="Ask as this user (impersonation).")
def whoami(output: str | None, as_user: str | None) -> None:
    """Show the user the API server sees: name, uid and groups.

    \b
    Example:
      minik8s auth whoami
    """
    review = _request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, as_user, ())
    if output == "json":
        click.echo(json.dumps(review, indent=2))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump(review, sort_keys=False).rstrip())
        return
    info = (review.get("status") or {}).get("userInfo") or {}
    rows = [("Username", info.get("username", "")), ("UID", info.get("uid", "")),
            ("Groups", "[" + " ".join(info.get("groups") or []) + "]")]
    click.echo("ATTRIBUTE   VALUE")
    for key, value in rows:
        if value:
            click.echo(f"{key:<11} {value}")


def describe_rbac(kind: str, obj: dict[str, Any], lines: list[str]) -> None:
    """kubectl's describe of the RBAC kinds: a role's rules as a table, a binding's role and subjects."""
    from minik8s.api.printers import format_table

    meta = obj["metadata"]
    labels = ",".join(f"{k2}={v}" for k2, v in (meta.get("labels") or {}).items()) or "<none>"
    annotations = ",".join(f"{k2}: {v}" for k2, v in (meta.get("annotations") or {}).items()) or "<none>"
    lines.extend([f"Labels:       {labels}", f"Annotations:  {annotations}"])
    if kind in ("Role", "ClusterRole"):
        rows: list[list[str]] = []
        for rule in obj.get("rules") or []:
            urls = "[" + " ".join(rule.get("nonResourceURLs") or []) + "]"
            names = "[" + " ".join(rule.get("resourceNames") or []) + "]"
            verbs = "[" + " ".join(rule.get("verbs") or []) + "]"
            resources = [f"{r}.{g}" if g else r for g in rule.get("apiGroups") or [""]
                         for r in rule.get("resources") or []] or [""]
            rows.extend([r, urls, names, verbs] for r in resources)
        lines.append("PolicyRule:")
        table = format_table(["Resources", "Non-Resource URLs", "Resource Names", "Verbs"], rows)
        lines.extend("  " + line for line in table.splitlines())
        return
    ref = obj.get("roleRef") or {}
    lines.extend(["Role:", f"  Kind:  {ref.get('kind', '')}", f"  Name:  {ref.get('name', '')}", "Subjects:"])
    rows = [[s.get("kind", ""), s.get("name", ""), s.get("namespace") or ""] for s in obj.get("subjects") or []]
    lines.extend("  " + line for line in format_table(["Kind", "Name", "Namespace"], rows).splitlines())


COMMANDS = [auth]
