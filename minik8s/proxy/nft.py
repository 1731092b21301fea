"""Running ``nft`` in a network namespace (the proxy's only side effect)."""

from __future__ import annotations

import logging
import subprocess

from minik8s.errors import MiniK8sError
from minik8s.network.netns import nsenter_argv

log = logging.getLogger("minik8s.proxy.nft")

NFT_TIMEOUT_S = 30.0


class NftError(MiniK8sError):
    pass


def apply(script: str, netns: str | None = None) -> None:
    """One atomic transaction: all of `script` is applied, or none of it."""
    if not script:
        return
    res = subprocess.run(nsenter_argv(netns, ["nft", "-f", "-"]), input=script, capture_output=True, text=True,
                         timeout=NFT_TIMEOUT_S)
    if res.returncode != 0:
        raise NftError(f"nft -f failed: {res.stderr.strip()[:2000]}")


def list_table(table: str, netns: str | None = None) -> str | None:
    """``nft list table ip TABLE``, or None when it does not exist."""
    res = subprocess.run(nsenter_argv(netns, ["nft", "list", "table", "ip", table]), capture_output=True, text=True,
                         timeout=NFT_TIMEOUT_S)
    return res.stdout if res.returncode == 0 else None


def delete_table(table: str, netns: str | None = None) -> None:
    apply(f"table ip {table}\ndelete table ip {table}\n", netns)
