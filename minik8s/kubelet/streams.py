"""The kubelet's interactive streams: exec and attach over the channel WebSocket protocol.

The API server relays a client's WebSocket here frame for frame (`minik8s.apiserver.streams`),
so this end speaks the same `v5/v4.channel.k8s.io` protocol kubectl does. Docker's side is a
hijacked socket from the low-level API (`exec_start(socket=True)`, `attach_socket`): a thread
per session reads it (blocking Docker I/O never runs on the event loop thread) and each write,
resize and inspect goes through `anyio.to_thread`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import docker.errors
from fastapi import FastAPI
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from minik8s import jsonc
from minik8s.errors import BadRequest, MiniK8sError
from minik8s.streaming import channels as ch

log = logging.getLogger("minik8s.kubelet.streams")

READ_CHUNK = 64 * 1024
DOCKER_HEADER = struct.Struct(">BxxxL")  # Docker's multiplexed stream frame: stream id, payload size
EXIT_WAIT_S = 5.0  # the output can end a moment before dockerd records the exit code
EXIT_POLL_S = 0.01
POLICY_VIOLATION = 1008  # WebSocket close code for a refused (unauthenticated) session


class Containers(Protocol):
    """What the streams need from the runtime: the Docker client and a pod's running container."""

    docker: Any

    def running_container(self, namespace: str, pod: str, container: str) -> Any: ...


@dataclass(frozen=True)
class StreamOptions:
    """The query of an exec or attach request (`stdin=true&tty=true&command=...`)."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False
    command: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: Any) -> StreamOptions:
        def flag(name: str, default: bool) -> bool:
            value = query.get(name)
            return default if value is None else value.lower() in ("true", "1")

        tty = flag("tty", False)
        # with a TTY, stderr is the terminal too: Kubernetes refuses the pair, so does this
        return cls(stdin=flag("stdin", False), stdout=flag("stdout", True), stderr=flag("stderr", True) and not tty,
                   tty=tty, command=tuple(query.getlist("command")))


class DockerSession:
    """One exec or attach: a hijacked Docker socket, read by one thread, written by others."""

    def __init__(self, api: Any, sock: Any, tty: bool, exec_id: str | None, container_id: str) -> None:
        self.api, self.tty, self.exec_id, self.container_id = api, tty, exec_id, container_id
        self._wrapper = sock
        self.raw: socket.socket = getattr(sock, "_sock", sock)
        self.raw.settimeout(None)

    @classmethod
    def start_exec(cls, api: Any, container_id: str, opts: StreamOptions) -> DockerSession:
        if not opts.command:
            raise BadRequest("you must specify at least one command for the container")
        exec_id = api.exec_create(container_id, list(opts.command), stdout=opts.stdout, stderr=opts.stderr,
                                  stdin=opts.stdin, tty=opts.tty)["Id"]
        return cls(api, api.exec_start(exec_id, socket=True, tty=opts.tty), opts.tty, exec_id, container_id)

    @classmethod
    def start_attach(cls, api: Any, container: Any, opts: StreamOptions) -> DockerSession:
        config = container.attrs.get("Config") or {}
        if opts.stdin and not config.get("OpenStdin"):
            raise BadRequest(f"stdin is not enabled for this container: set stdin: true in its spec "
                             f"(container {container.name})")
        params = {"stdin": int(opts.stdin), "stdout": int(opts.stdout), "stderr": int(opts.stderr), "stream": 1}
        sock = api.attach_socket(container.id, params=params)
        return cls(api, sock, bool(config.get("Tty")), None, container.id)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(channel, data) until Docker ends the stream; a TTY's output is all stdout."""
        buf = b""
        while True:
            chunk = self.raw.recv(READ_CHUNK)
            if not chunk:
                return
            if self.tty:
                yield ch.STDOUT, chunk
                continue
            buf += chunk
            while len(buf) >= DOCKER_HEADER.size:
                stream, size = DOCKER_HEADER.unpack_from(buf)
                if len(buf) < DOCKER_HEADER.size + size:
                    break
                data = buf[DOCKER_HEADER.size:DOCKER_HEADER.size + size]
                buf = buf[DOCKER_HEADER.size + size:]
                if data:
                    yield (ch.STDERR if stream == 2 else ch.STDOUT), data

    def write(self, data: bytes) -> None:
        self.raw.sendall(data)

    def close_stdin(self) -> None:
        """Half-close: dockerd closes the process's stdin, so `cat` and `tar x` see EOF."""
        try:
            self.raw.shutdown(socket.SHUT_WR)
        except OSError as exc:
            log.debug("stdin half-close failed: %s", exc)

    def resize(self, width: int, height: int) -> None:
        if self.exec_id is not None:
            self.api.exec_resize(self.exec_id, height=height, width=width)
        else:
            self.api.resize(self.container_id, height, width)

    def exit_code(self) -> int | None:
        """The exec's exit code once dockerd has it; None for attach (Kubernetes reports none)."""
        if self.exec_id is None:
            return None
        deadline = time.monotonic() + EXIT_WAIT_S
        while True:
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return None
            time.sleep(EXIT_POLL_S)

    def abort(self) -> None:
        """End the session from any thread: shutdown wakes the reader blocked in recv."""
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._wrapper.close()
        self.raw.close()


async def bridge(ws: WebSocket, session: DockerSession, protocol: str) -> None:
    """Pump Docker's output to the WebSocket and the WebSocket's stdin/resize/close to Docker until
    the command ends (then write its Status on the error channel) or the client goes away."""
    loop = asyncio.get_running_loop()
    output_done = asyncio.Event()

    def pump_output() -> None:
        try:
            for channel, data in session.frames():
                asyncio.run_coroutine_threadsafe(ws.send_bytes(ch.frame(channel, data)), loop).result()
        except Exception as exc:  # the client or dockerd went away: the session is over either way
            log.debug("output pump ended: %s", exc)
        finally:
            loop.call_soon_threadsafe(output_done.set)

    reader = threading.Thread(target=pump_output, name="kubelet-stream-out", daemon=True)
    reader.start()
    pump_input = asyncio.create_task(_pump_input(ws, session, protocol))
    waiter = asyncio.create_task(output_done.wait())
    await asyncio.wait({pump_input, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not output_done.is_set():  # the client left first: stop the command's stream
        await anyio.to_thread.run_sync(session.abort)
        await output_done.wait()
        return
    pump_input.cancel()
    try:
        code = await anyio.to_thread.run_sync(session.exit_code)
        status = ch.exit_status(code) if code is not None else ch.success_status()
        await ws.send_bytes(ch.status_message(status))
        await ws.close()
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        log.debug("client gone before the exit status: %s", exc)
    finally:
        await anyio.to_thread.run_sync(session.abort)


async def _pump_input(ws: WebSocket, session: DockerSession, protocol: str) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        payload = message.get("bytes") if message.get("bytes") is not None else message.get("text")
        msg = ch.parse(payload or b"", protocol)
        if msg is None:
            continue
        if msg.closed:
            if msg.channel == ch.STDIN:
                await anyio.to_thread.run_sync(session.close_stdin)
        elif msg.channel == ch.STDIN and msg.data:
            await anyio.to_thread.run_sync(session.write, msg.data)
        elif msg.channel == ch.RESIZE:
            size = ch.resize_of(msg.data)
            if size is not None:
                await _resize(session, *size)


async def _resize(session: DockerSession, width: int, height: int) -> None:
    try:
        await anyio.to_thread.run_sync(session.resize, width, height)
    except docker.errors.APIError as exc:  # e.g. the process has just exited: nothing left to resize
        log.debug("resize failed: %s", exc)


async def _refuse(ws: WebSocket, message: str, reason: str = "BadRequest", code: int = 400) -> None:
    await ws.send_bytes(ch.status_message(ch.failure_status(message, reason, code)))
    await ws.close()


def register(app: FastAPI, runtime: Containers, check: Any) -> None:
    """Add `/exec/...` and `/attach/...` WebSocket routes; `check(scope)` is None or the error refusing the peer."""

    async def serve(ws: WebSocket, kind: str) -> None:
        refused = check(ws.scope)
        if refused is not None:  # a plain HTTP 401/403 before the upgrade, as the API server's own
            await ws.send_denial_response(Response(jsonc.dumps(refused.to_status()), refused.code,
                                                   media_type="application/json"))
            return
        protocol = ch.choose_protocol(ch.offered_protocols(ws.headers.get("sec-websocket-protocol")))
        if protocol is None:
            await ws.close(POLICY_VIOLATION, f"subprotocol must be one of {ch.SERVER_PROTOCOLS}")
            return
        await ws.accept(subprotocol=protocol)
        p = ws.path_params
        opts = StreamOptions.from_query(ws.query_params)
        try:
            container = await anyio.to_thread.run_sync(
                runtime.running_container, p["namespace"], p["pod"], p["container"])
            api = runtime.docker.api
            if kind == "exec":
                session = await anyio.to_thread.run_sync(DockerSession.start_exec, api, container.id, opts)
            else:
                session = await anyio.to_thread.run_sync(DockerSession.start_attach, api, container, opts)
        except MiniK8sError as exc:
            await _refuse(ws, exc.message, exc.reason, exc.code)
            return
        except docker.errors.APIError as exc:
            await _refuse(ws, f"{kind} failed: {exc.explanation or exc}", "InternalError", 500)
            return
        await bridge(ws, session, protocol)

    async def exec_stream(ws: WebSocket) -> None:
        await serve(ws, "exec")

    async def attach_stream(ws: WebSocket) -> None:
        await serve(ws, "attach")

    app.add_api_websocket_route("/exec/{namespace}/{pod}/{container}", exec_stream)
    app.add_api_websocket_route("/attach/{namespace}/{pod}/{container}", attach_stream)
