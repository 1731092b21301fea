"""SPDY/3.1 framing, the subset kubectl's port-forward speaks (client-go over moby/spdystream).

Frames (draft-mbelshe-httpbis-spdy-00, "SPDY Protocol - Draft 3", section 2.2): a control frame is
``1 | version(15) | type(16) | flags(8) | length(24) | payload``, a data frame
``0 | stream-id(31) | flags(8) | length(24) | data``. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are
``count(32) (len(32) name len(32) value)*``, compressed by one zlib stream per direction that lives
as long as the connection, primed with the spec's dictionary and flushed with Z_SYNC_FLUSH after
each block. spdystream does no flow control, so WINDOW_UPDATE is accepted and never needed.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from dataclasses import dataclass

VERSION = 3
# control frame types
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
MAX_DATA_LENGTH = (1 << 24) - 1
_HEADER = struct.Struct("!IBBH")  # first word, flags, length (24 bits as 8 + 16)

# The header-compression dictionary of SPDY/3 (draft 3, section 2.6.10.1; byte for byte the
# `headerDictionary` of moby/spdystream's spdy/dictionary.go): these words, each prefixed by its
# 4-byte big-endian length, followed by the literal tail. 1423 bytes, adler32 0xe3c6a7c2.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(len(w).to_bytes(4, "big") + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL.encode()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer sent bytes that are not SPDY/3: the connection cannot go on."""


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    flags: int
    data: bytes | memoryview  # a view into the received bytes when it arrived whole

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class ControlFrame:
    type: int
    flags: int
    payload: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    def stream_id(self) -> int:
        """The stream a SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS or WINDOW_UPDATE is about."""
        if len(self.payload) < 4:
            raise ProtocolError(f"control frame type {self.type} too short")
        return int(struct.unpack_from("!I", self.payload)[0]) & 0x7FFFFFFF

    def word(self, index: int) -> int:
        """The 32-bit field at ``index`` (PING id, RST_STREAM status, GOAWAY fields)."""
        if len(self.payload) < 4 * (index + 1):
            raise ProtocolError(f"control frame type {self.type} too short")
        return int(struct.unpack_from("!I", self.payload, 4 * index)[0])


Frame = DataFrame | ControlFrame


class FrameReader:
    """Cuts a byte stream (arriving in pieces of any size) into frames.

    A payload that arrives whole inside one piece is handed on as a memoryview of that piece (no
    copy: kubectl's 32 KiB data frames usually do), so ``feed`` must be given immutable bytes.
    """

    def __init__(self) -> None:
        self._pieces: deque[memoryview] = deque()
        self._size = 0
        self._header: tuple[int, int, int] | None = None  # of the frame whose payload is incomplete

    def _take(self, n: int) -> memoryview | bytes:
        """The next n bytes (n <= self._size): a slice of the first piece when it holds them all."""
        first = self._pieces[0]
        if len(first) >= n:
            self._pieces[0] = first[n:]
            if not self._pieces[0]:
                self._pieces.popleft()
            self._size -= n
            return first[:n]
        out = bytearray()
        while len(out) < n:
            piece = self._pieces.popleft()
            need = n - len(out)
            out += piece[:need]
            if len(piece) > need:
                self._pieces.appendleft(piece[need:])
        self._size -= n
        return bytes(out)  # the one copy, for a frame that arrived in pieces

    def feed(self, data: bytes) -> list[Frame]:
        if data:
            self._pieces.append(memoryview(data))
            self._size += len(data)
        frames: list[Frame] = []
        while True:
            if self._header is None:
                if self._size < 8:
                    break
                word, flags, length_high, length_low = _HEADER.unpack(self._take(8))
                self._header = word, flags, (length_high << 16) | length_low
            first, flags, length = self._header
            if self._size < length:
                break  # the payload is still on its way: the header waits parsed, not re-read per piece
            self._header = None
            payload = self._take(length) if length else b""
            if first & 0x80000000:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
                frames.append(ControlFrame(first & 0xFFFF, flags, bytes(payload)))
            else:
                frames.append(DataFrame(first, flags, payload))
        return frames


def data_header(stream_id: int, length: int, fin: bool = False) -> bytes:
    """The 8-byte header of one DATA frame of ``length`` bytes (at most MAX_DATA_LENGTH)."""
    return _header(stream_id & 0x7FFFFFFF, FLAG_FIN if fin else 0, length)


def _header(first: int, flags: int, length: int) -> bytes:
    return _HEADER.pack(first, flags, length >> 16, length & 0xFFFF)


def control_frame(frame_type: int, flags: int, payload: bytes) -> bytes:
    return _header(0x80000000 | (VERSION << 16) | frame_type, flags, len(payload)) + payload


def data_frames(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    """``data`` as one or more DATA frames (a frame holds at most 16 MiB); FIN on the last."""
    if len(data) <= MAX_DATA_LENGTH:  # the usual case: one frame, one copy of the payload
        return _header(stream_id & 0x7FFFFFFF, FLAG_FIN if fin else 0, len(data)) + data
    out = []
    for start in range(0, max(len(data), 1), MAX_DATA_LENGTH):
        chunk = data[start:start + MAX_DATA_LENGTH]
        last = start + MAX_DATA_LENGTH >= len(data)
        out.append(_header(stream_id & 0x7FFFFFFF, FLAG_FIN if fin and last else 0, len(chunk)) + chunk)
    return b"".join(out)


class HeaderCodec:
    """One side's two zlib streams: what it sends and what it receives, each for the whole connection."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                         zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: Headers) -> bytes:
        parts = [struct.pack("!I", len(headers))]
        for name, values in headers.items():
            key, value = name.lower().encode(), "\x00".join(values).encode()
            parts += [struct.pack("!I", len(key)), key, struct.pack("!I", len(value)), value]
        return self._deflate.compress(b"".join(parts)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"bad header block: {exc}") from None
        try:
            (count,) = struct.unpack_from("!I", raw)
            headers: Headers = {}
            pos = 4
            for _ in range(count):
                (size,) = struct.unpack_from("!I", raw, pos)
                name = raw[pos + 4:pos + 4 + size].decode()
                pos += 4 + size
                (size,) = struct.unpack_from("!I", raw, pos)
                value = raw[pos + 4:pos + 4 + size].decode()
                pos += 4 + size
                headers.setdefault(name.lower(), []).extend(value.split("\x00"))
        except (struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad header block: {exc}") from None
        return headers


def syn_stream(codec: HeaderCodec, stream_id: int, headers: Headers, fin: bool = False) -> bytes:
    payload = struct.pack("!IIBB", stream_id, 0, 0, 0) + codec.encode(headers)
    return control_frame(SYN_STREAM, FLAG_FIN if fin else 0, payload)


def parse_syn_stream(codec: HeaderCodec, frame: ControlFrame) -> tuple[int, Headers]:
    if len(frame.payload) < 10:
        raise ProtocolError("SYN_STREAM too short")
    return frame.stream_id(), codec.decode(frame.payload[10:])


def syn_reply(codec: HeaderCodec, stream_id: int, headers: Headers, fin: bool = False) -> bytes:
    return control_frame(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack("!I", stream_id) + codec.encode(headers))


def parse_syn_reply(codec: HeaderCodec, frame: ControlFrame) -> tuple[int, Headers]:
    return frame.stream_id(), codec.decode(frame.payload[4:])


def rst_stream(stream_id: int, status: int) -> bytes:
    return control_frame(RST_STREAM, 0, struct.pack("!II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return control_frame(PING, 0, struct.pack("!I", ping_id))


def goaway(last_good_stream_id: int, status: int = 0) -> bytes:
    return control_frame(GOAWAY, 0, struct.pack("!II", last_good_stream_id, status))
