"""What every verb shares: the client, output formats."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from minik8s import Client
from minik8s.api import types as t


def client() -> Client:
    c = Client.from_config()
    printed: set[str] = set()

    def warn(message: str) -> None:
        """As kubectl prints them; once each (`apply` checks every document by a dry run first)."""
        if message not in printed:
            printed.add(message)
            click.echo(f"Warning: {message}", err=True)

    c.on_warning = warn
    return c


def as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if isinstance(obj, t.TypedObject) else dict(obj)


def dump(obj: Any, output: str) -> str:
    data = as_dict(obj) if not isinstance(obj, list) else {"apiVersion": "v1", "kind": "List", "items": obj}
    if output == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


namespace_option = click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
