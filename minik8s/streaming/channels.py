"""The `*.channel.k8s.io` WebSocket subprotocols, as kubectl and the official Python client speak them.

Every WebSocket message is one channel id byte followed by that channel's data. For exec and
attach: 0 stdin, 1 stdout, 2 stderr, 3 error (one `metav1.Status` JSON when the command ends),
4 resize (`{"Width": W, "Height": H}`). v5 adds a close signal: the message `[255, id]` says the
sender will write no more on channel `id` (kubectl sends it for stdin EOF, which `kubectl cp`
needs). Clients may send text or binary frames; servers send binary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: What a server accepts, best first (kubectl 1.30+ offers v5 only; the Python client v5 then v4).
SERVER_PROTOCOLS = (V5, V4)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5 only: [CLOSE, channel id]

EXIT_CODE_CAUSE = "ExitCode"
NON_ZERO_EXIT = "NonZeroExitCode"


def choose_protocol(offered: list[str] | tuple[str, ...]) -> str | None:
    """The subprotocol to answer with, or None when the client offers none we speak."""
    for proto in SERVER_PROTOCOLS:
        if proto in offered:
            return proto
    return None


def offered_protocols(header: str | None) -> list[str]:
    """Parse a `Sec-WebSocket-Protocol` header (comma separated; kubectl sends several headers joined)."""
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def close_frame(channel: int) -> bytes:
    return bytes((CLOSE, channel))


@dataclass(frozen=True)
class Message:
    """One decoded message: `closed` is set for a v5 close signal (then `channel` is the closed one)."""

    channel: int
    data: bytes = b""
    closed: bool = False


def parse(payload: bytes | str, protocol: str) -> Message | None:
    """Decode one message; None for an empty one (some clients send those as keep-alives)."""
    raw = payload.encode("latin-1") if isinstance(payload, str) else payload
    if not raw:
        return None
    if raw[0] == CLOSE and protocol == V5:
        return Message(raw[1], closed=True) if len(raw) > 1 else None
    return Message(raw[0], raw[1:])


def resize_of(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a resize message; None when it is not a usable one."""
    try:
        size = json.loads(data)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def resize_message(width: int, height: int) -> bytes:
    return frame(RESIZE, json.dumps({"Width": width, "Height": height}).encode())


def success_status() -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def exit_status(code: int) -> dict[str, Any]:
    """What the kubelet writes on the error channel when the command ended (v4+ shape)."""
    if code == 0:
        return success_status()
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: {code}", "reason": NON_ZERO_EXIT,
            "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]}}


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def status_message(status: dict[str, Any]) -> bytes:
    return frame(ERROR, json.dumps(status).encode())


def exit_code_of(status: dict[str, Any] | None) -> int | None:
    """The remote command's exit code from an error-channel Status; None when it failed otherwise."""
    if not status or status.get("status") == "Success":
        return 0
    if status.get("reason") == NON_ZERO_EXIT:
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == EXIT_CODE_CAUSE:
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    return None
    return None
