"""Exec and attach for the SDK and CLI: a blocking WebSocket client of the channel protocol.

`open_pod_stream` upgrades `pods/NAME/exec` (or `attach`) like kubectl does (v5 first, so stdin
EOF can be signalled); `PodStream.run` pumps a local stdin to the remote one and the remote
stdout/stderr to local files, and returns the remote command's exit code.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from minik8s.errors import MiniK8sError, Unavailable
from minik8s.streaming import channels as ch

log = logging.getLogger("minik8s.client.streams")

CONNECT_TIMEOUT_S = 30.0
STDIN_CHUNK = 32 * 1024


class RemoteError(MiniK8sError):
    """The stream ended with a Failure Status that is not an exit code (e.g. the exec could not start)."""

    code = 500
    reason = "InternalError"


class PodStream:
    """One open exec/attach session."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.protocol = conn.subprotocol or ch.V4
        self.status: dict[str, Any] | None = None
        self._send_lock = threading.Lock()

    def send_stdin(self, data: bytes) -> None:
        self._send(ch.frame(ch.STDIN, data))

    def close_stdin(self) -> None:
        if self.protocol == ch.V5:
            self._send(ch.close_frame(ch.STDIN))

    def resize(self, width: int, height: int) -> None:
        self._send(ch.resize_message(width, height))

    def _send(self, payload: bytes) -> None:
        with self._send_lock:
            self.conn.send(payload)

    def messages(self) -> Any:
        """(channel, data) until the server closes; the error channel's Status is kept in `status`."""
        while True:
            try:
                payload = self.conn.recv()
            except ConnectionClosed:
                return
            msg = ch.parse(payload, self.protocol)
            if msg is None or msg.closed:
                continue
            if msg.channel == ch.ERROR:
                if msg.data:
                    # the Status is the session's last word (sent after every output frame, on the same
                    # ordered connection): done, even if the server is slow to close the connection
                    self.status = json.loads(msg.data)
                    return
                continue
            yield msg.channel, msg.data

    def exit_code(self) -> int:
        """0, the remote exit code, or RemoteError when the stream failed for another reason."""
        code = ch.exit_code_of(self.status)
        if code is None:
            raise RemoteError(str((self.status or {}).get("message") or "the stream failed"))
        return code

    def run(self, stdin: IO[bytes] | None, stdout: IO[bytes], stderr: IO[bytes],
            on_output: Callable[[], None] | None = None) -> int:
        """Pump until the remote side ends; `stdin` is read on a thread and closed remotely at EOF."""
        if stdin is not None:
            threading.Thread(target=self._pump_stdin, args=(stdin,), name="stdin", daemon=True).start()
        for channel, data in self.messages():
            out = stderr if channel == ch.STDERR else stdout
            out.write(data)
            out.flush()
            if on_output is not None:
                on_output()
        return self.exit_code()

    def _pump_stdin(self, stdin: IO[bytes]) -> None:
        # read1: what is there now (a keystroke, a pipe's chunk), not a full buffer
        read = getattr(stdin, "read1", stdin.read)
        try:
            while True:
                data = read(STDIN_CHUNK)
                if not data:
                    break
                self.send_stdin(data)
            self.close_stdin()
        except (ConnectionClosed, OSError, ValueError) as exc:  # the session ended while we were reading input
            log.debug("stdin pump ended: %s", exc)

    def close(self) -> None:
        self.conn.close()


def open_pod_stream(client: Any, pod: str, namespace: str = "default", subresource: str = "exec",
                    command: Sequence[str] = (), container: str | None = None, stdin: bool = False,
                    tty: bool = False) -> PodStream:
    """Upgrade to a WebSocket on `pods/POD/{exec,attach}`; API errors raise as the SDK's do."""
    params: list[tuple[str, str]] = [("command", c) for c in command]
    params += [("stdin", str(stdin).lower()), ("stdout", "true"), ("stderr", str(not tty).lower()),
               ("tty", str(tty).lower())]
    if container:
        params.append(("container", container))
    url = urlsplit(client.server)
    scheme = "wss" if url.scheme == "https" else "ws"
    uri = f"{scheme}://{url.netloc}{url.path}/api/v1/namespaces/{namespace}/pods/{pod}/{subresource}?{urlencode(params)}"
    context = client.ssl_context or (ssl.create_default_context() if scheme == "wss" else None)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    try:
        conn = connect(uri, ssl=context, subprotocols=[Subprotocol(ch.V5), Subprotocol(ch.V4)],
                       additional_headers=headers, compression=None, max_size=None, open_timeout=CONNECT_TIMEOUT_S,
                       legacy=True)  # a plain connection object, closed by PodStream.close
    except InvalidStatus as exc:
        client._decode(exc.response.status_code, exc.response.body or b"")  # raises the Status as an error
        raise Unavailable(f"{subresource} upgrade refused: HTTP {exc.response.status_code}") from None
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise Unavailable(f"cannot reach the API server at {client.server}: {exc}") from None
    return PodStream(conn)
