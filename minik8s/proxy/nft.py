"""Running ``nft`` in a network namespace (the proxy's only side effect)."""

from __future__ import annotations

import logging
import re
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


def listing_elements(listing: str) -> list[str]:
    """Every map/set element of an `nft list` text ("key : value" or "key"), in listed order."""
    out: list[str] = []
    for block in re.findall(r"elements = \{(.*?)\}", listing, re.S):
        out.extend(" ".join(el.split()) for el in block.split(","))
    return out


def canonical_listing(listing: str | None) -> list[str]:
    """A table listing's maps, sets and chains as sorted blocks, each with its elements sorted: nft
    prints chains in creation order and elements in hash order, neither of which is part of the rules.
    Two tables with equal canonical listings hold the same rules."""
    blocks = re.split(r"\n(?=\t(?:map|set|chain) )", (listing or "").rstrip().removesuffix("}"))
    return sorted(re.sub(r"elements = \{(.*?)\}", lambda m: " ".join(sorted(listing_elements(m.group(0)))), b,
                         flags=re.S).strip() for b in blocks)


def table_exists(table: str, netns: str | None = None) -> bool:
    """Whether ``table ip TABLE`` exists, without listing its (possibly 100k) elements."""
    res = subprocess.run(nsenter_argv(netns, ["nft", "list", "tables", "ip"]), capture_output=True, text=True,
                         timeout=NFT_TIMEOUT_S)
    return res.returncode == 0 and f"table ip {table}" in res.stdout.splitlines()


def delete_table(table: str, netns: str | None = None) -> None:
    apply(f"table ip {table}\ndelete table ip {table}\n", netns)
