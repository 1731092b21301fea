"""Ray's token authentication: one shared secret per cluster, in the state dir, mode 0600.

Ray 2.60 checks a bearer token on every gRPC and HTTP entry point (GCS, raylets, workers, client
server, dashboard) when ``RAY_AUTH_MODE=token``; the token comes from ``RAY_AUTH_TOKEN``, else the
file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``.  minik8s always names the file
(its state dir, never the home directory, which ``ray.init`` would otherwise fill), passes it to
every Ray process it starts through the environment (workers inherit the raylet's), and sets it in
its own process before it attaches as a driver or asks the GCS anything.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_BYTES = 32


def write(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` with mode 0600 (created so: never readable by others, not even briefly)."""
    if not token.strip():
        raise ValueError("the Ray auth token is empty")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token.strip())
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT


def ensure(path: Path) -> str:
    """The token at ``path``, made at the first call (the head's ``up``)."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_hex(TOKEN_BYTES)
        write(path, token)
    return token


def env(path: Path) -> dict[str, str]:
    """The environment every Ray process of the cluster starts with."""
    return {AUTH_MODE_ENV: "token", TOKEN_PATH_ENV: str(path)}


def use(path: Path) -> None:
    """Make this process a token-authenticated Ray client (driver, GCS probe), with the token at ``path``.

    Ray reads the mode into its cached config and caches the token: both are refreshed here, so a
    process that already imported Ray (or used another token) picks this one up."""
    if not path.is_file():
        raise FileNotFoundError(f"Ray auth token {path} is missing: is this the cluster's state dir?")
    os.environ.pop(TOKEN_ENV, None)  # it would take precedence over the file
    os.environ.update(env(path))
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
