"""SPDY/3.1 framing and header compression (minik8s.apiserver.spdy), and the SPDY port-forward session's
stream pairing, with a fake upstream instead of a kubelet."""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any

import pytest

from minik8s.apiserver import portforward_spdy, spdy
from minik8s.apiserver.portforward import PodTarget


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2  # the DICTID a SPDY/3 peer's zlib stream names


def test_headers_round_trip_across_many_blocks_of_one_stream() -> None:
    client, server = spdy.HeaderCodec(), spdy.HeaderCodec()
    blocks = [{"streamtype": ["error"], "port": ["8080"], "requestid": [str(i)]} for i in range(5)]
    blocks.append({"x-multi": ["a", "b"]})
    wire = [client.encode(b) for b in blocks]  # one zlib stream: later blocks depend on earlier ones
    assert [server.decode(w) for w in wire] == blocks


def test_header_names_are_lowercased() -> None:
    a, b = spdy.HeaderCodec(), spdy.HeaderCodec()
    assert b.decode(a.encode({"StreamType": ["data"]})) == {"streamtype": ["data"]}


def test_garbage_header_block_is_a_protocol_error() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.HeaderCodec().decode(b"not zlib at all")


def test_frames_round_trip_in_arbitrary_pieces() -> None:
    client, server = spdy.HeaderCodec(), spdy.HeaderCodec()
    wire = (spdy.syn_stream(client, 1, {"streamtype": ["data"]}) + spdy.data_frames(1, b"hello")
            + spdy.ping(7) + spdy.data_frames(1, b"", fin=True) + spdy.rst_stream(1, spdy.CANCEL))
    reader = spdy.FrameReader()
    frames: list[spdy.Frame] = []
    for i in range(0, len(wire), 3):  # a WebSocket message boundary may fall anywhere
        frames += reader.feed(wire[i:i + 3])
    syn, data, ping, fin, rst = frames
    assert isinstance(syn, spdy.ControlFrame) and syn.type == spdy.SYN_STREAM
    assert spdy.parse_syn_stream(server, syn) == (1, {"streamtype": ["data"]})
    assert data == spdy.DataFrame(1, 0, b"hello") and not data.fin
    assert isinstance(ping, spdy.ControlFrame) and ping.type == spdy.PING and ping.word(0) == 7
    assert isinstance(fin, spdy.DataFrame) and fin.fin and fin.data == b""
    assert isinstance(rst, spdy.ControlFrame) and rst.stream_id() == 1 and rst.word(1) == spdy.CANCEL


def test_control_frame_header_layout() -> None:
    frame = spdy.ping(0x01020304)
    assert frame == bytes([0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4])


def test_wrong_version_is_refused() -> None:
    bad = struct.pack("!IBBH", 0x80000000 | (2 << 16) | spdy.PING, 0, 0, 4) + b"\0\0\0\1"
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameReader().feed(bad)


class _FakeUpstream:
    """What the kubelet would be: echoes uploads back upper-cased; EOF after the client's half-close."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        await self.queue.put(data.upper())

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        await self.send(b"".join(parts))

    async def close_write(self) -> None:
        await self.queue.put(None)

    async def recv(self) -> bytes | str | None:
        return await self.queue.get()

    async def close(self) -> None:
        pass


def test_session_pairs_streams_and_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_open(target: Any, port: int) -> _FakeUpstream:
        return _FakeUpstream()

    monkeypatch.setattr(portforward_spdy.Upstream, "open", fake_open)

    async def scenario() -> list[spdy.Frame]:
        sent: list[bytes] = []

        async def send(frame: bytes) -> None:
            sent.append(frame)

        session = portforward_spdy.SpdySession(send, PodTarget("default", "p", "uid", "ws://x", None))
        kubectl = spdy.HeaderCodec()
        headers = {"port": ["80"], "requestid": ["0"]}
        await session.feed(spdy.syn_stream(kubectl, 1, {"streamtype": ["error"], **headers}, fin=True))
        await session.feed(spdy.syn_stream(kubectl, 3, {"streamtype": ["data"], **headers}))
        await session.feed(spdy.data_frames(3, b"ping") + spdy.data_frames(3, b"pong")
                           + spdy.data_frames(3, b"", fin=True))
        for _ in range(100):
            await asyncio.sleep(0)
        await session.close()
        return spdy.FrameReader().feed(b"".join(sent))

    frames = asyncio.run(scenario())
    replies = [f for f in frames if isinstance(f, spdy.ControlFrame) and f.type == spdy.SYN_REPLY]
    assert [f.stream_id() for f in replies] == [1, 3]
    data = [f for f in frames if isinstance(f, spdy.DataFrame)]
    assert b"".join(f.data for f in data if f.stream_id == 3) == b"PINGPONG"  # in order, batched or not
    assert {f.stream_id for f in data if f.fin} == {1, 3}  # both streams ended, the error stream empty
    assert all(not f.data for f in data if f.stream_id == 1)


def test_data_over_16_mib_is_split_with_fin_on_the_last_frame() -> None:
    data = b"x" * (spdy.MAX_DATA_LENGTH + 10)
    frames = spdy.FrameReader().feed(spdy.data_frames(5, data, fin=True))
    assert [(f.stream_id, len(f.data), f.fin) for f in frames if isinstance(f, spdy.DataFrame)] == [
        (5, spdy.MAX_DATA_LENGTH, False), (5, 10, True)]


def _client_frame(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04", fin: bool = True) -> bytes:
    """A masked client frame, as RFC 6455 requires of clients."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_websocket_reader_unmasks_all_length_forms_in_any_pieces() -> None:
    from minik8s.apiserver.spdy_upgrade import OP_BINARY, OP_CONTINUATION, OP_PING, WebSocketReader

    payloads = [b"x" * 5, bytes(range(256)) * 3, bytes(range(256)) * 300]  # 7-bit, 16-bit and 64-bit lengths
    wire = (_client_frame(OP_BINARY, payloads[0], fin=False) + _client_frame(OP_CONTINUATION, payloads[1])
            + _client_frame(OP_PING, b"hi") + _client_frame(OP_BINARY, payloads[2]))
    reader, frames = WebSocketReader(), []
    for i in range(0, len(wire), 1000):
        frames += reader.feed(wire[i:i + 1000])
    assert frames == [(OP_BINARY, payloads[0]), (OP_CONTINUATION, payloads[1]), (OP_PING, b"hi"),
                      (OP_BINARY, payloads[2])]


def test_server_frames_are_unmasked_and_final() -> None:
    from minik8s.apiserver.spdy_upgrade import OP_BINARY, ws_frame

    assert ws_frame(OP_BINARY, b"abc") == b"\x82\x03abc"
    assert ws_frame(OP_BINARY, b"a" * 300)[:4] == b"\x82\x7e\x01\x2c"
    assert ws_frame(OP_BINARY, b"a" * 70000)[:10] == b"\x82\x7f" + (70000).to_bytes(8, "big")


def test_frames_cut_at_every_boundary_come_out_whole() -> None:
    codec = spdy.HeaderCodec()
    stream = (spdy.syn_stream(codec, 1, {"port": ["80"]}) + spdy.data_frames(1, bytes(range(256)) * 40)
              + spdy.data_frames(1, b"") + spdy.ping(7) + spdy.data_frames(3, b"tail", fin=True))
    expected = [(type(f).__name__, bytes(getattr(f, "data", b"")), f.flags) for f in spdy.FrameReader().feed(stream)]
    assert len(expected) == 5
    for size in (1, 3, 7, 8, 9, 4096, 10239, len(stream)):
        reader = spdy.FrameReader()
        frames: list[spdy.Frame] = []
        for start in range(0, len(stream), size):
            frames += reader.feed(stream[start:start + size])
        assert [(type(f).__name__, bytes(getattr(f, "data", b"")), f.flags) for f in frames] == expected, size


def test_a_payload_that_arrives_whole_is_not_copied() -> None:
    frame = spdy.data_frames(5, b"x" * 1000)
    reader = spdy.FrameReader()
    assert reader.feed(frame[:8]) == []
    (data,) = reader.feed(frame[8:])
    assert isinstance(data, spdy.DataFrame) and isinstance(data.data, memoryview) and data.data == b"x" * 1000
