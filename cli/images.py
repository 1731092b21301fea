"""image build | push | ls: user images in the cluster registry."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
