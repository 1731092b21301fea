"""The channel protocol's framing and error-channel Status (what kubectl and the Python client parse)."""

from __future__ import annotations

import json

import pytest

from cli.copy import _remote
from minik8s.errors import BadRequest
from minik8s.streaming import channels as ch


def test_choose_protocol_prefers_v5_and_refuses_unknown() -> None:
    assert ch.choose_protocol(ch.offered_protocols("v4.channel.k8s.io, v5.channel.k8s.io")) == ch.V5
    assert ch.choose_protocol(ch.offered_protocols("v4.channel.k8s.io")) == ch.V4
    assert ch.choose_protocol(ch.offered_protocols("base64.channel.k8s.io")) is None
    assert ch.choose_protocol(ch.offered_protocols(None)) is None


def test_parse_binary_text_and_close_signal() -> None:
    assert ch.parse(ch.frame(ch.STDIN, b"data"), ch.V5) == ch.Message(ch.STDIN, b"data")
    assert ch.parse("\x00typed", ch.V4) == ch.Message(ch.STDIN, b"typed")  # the Python client sends str as text
    assert ch.parse(ch.close_frame(ch.STDIN), ch.V5) == ch.Message(ch.STDIN, closed=True)
    assert ch.parse(ch.close_frame(ch.STDIN), ch.V4) == ch.Message(255, b"\x00")  # no close signal before v5
    assert ch.parse(b"", ch.V5) is None


def test_resize_message_round_trip_and_bad_sizes() -> None:
    msg = ch.parse(ch.resize_message(120, 30), ch.V5)
    assert msg is not None and msg.channel == ch.RESIZE and ch.resize_of(msg.data) == (120, 30)
    assert ch.resize_of(b'{"Width": 0, "Height": 30}') is None
    assert ch.resize_of(b"not json") is None


def test_exit_status_shapes() -> None:
    assert ch.exit_status(0) == ch.success_status()
    failed = ch.exit_status(3)
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert ch.exit_code_of(json.loads(ch.status_message(failed)[1:])) == 3
    assert ch.exit_code_of(None) == 0
    assert ch.exit_code_of(ch.failure_status("container not running")) is None


def test_cp_path_parsing() -> None:
    assert _remote("web:/tmp/x", "default") == ("default", "web", "/tmp/x")
    assert _remote("prod/web:/tmp/x", "default") == ("prod", "web", "/tmp/x")
    assert _remote("./local:file", "default") is None
    assert _remote("/abs/path", "default") is None
    with pytest.raises(BadRequest):
        _remote("web:", "default")
