"""Tests of optcheck.audit._wire: plain data round-trips; anything else is a ProtocolViolation."""

from __future__ import annotations

import json
import math
import os
import pickle
import struct

import numpy as np
import pytest

from optcheck.audit import _wire
from optcheck.audit._wire import Obj, Opaque, ProtocolViolation, Ref, Tensor, decode, encode


def test_plain_data_round_trips() -> None:
    value = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": (1, 2.5, -0.0, math.nan, math.inf, None, True, "s"),
        3: [np.zeros((0,), dtype=np.int64), np.array(True)],
        ("k", 1): Obj("mod.Cls", {"x": np.ones(2)}, None),
        "o": Opaque("function", "f"),
    }
    out = decode(encode(value))
    assert out.keys() == value.keys()
    np.testing.assert_array_equal(out["a"], value["a"])
    assert out["a"].dtype == np.float32 and out["a"].flags.writeable
    assert out["b"][:3] == (1, 2.5, -0.0) and math.copysign(1, out["b"][2]) == -1
    assert math.isnan(out["b"][3]) and out["b"][4] == math.inf and out["b"][5:] == (None, True, "s")
    assert out[3][0].shape == (0,) and out[3][1].dtype == np.bool_
    assert isinstance(out[("k", 1)], Obj) and out[("k", 1)].type == "mod.Cls"
    assert out["o"] == Opaque("function", "f")


def test_specs_only_when_asked() -> None:
    frame = encode({"r": Ref("opt").attr("state").item(Ref("p0")), "t": Tensor(np.ones(2), parameter=True)})
    out = decode(frame, specs=True)
    assert out["r"] == Ref("opt", (("attr", "state"), ("item", Ref("p0"))))
    assert isinstance(out["t"], Tensor) and out["t"].parameter
    with pytest.raises(ProtocolViolation, match="unknown tag"):
        decode(frame)  # the parent never accepts specs from the child


def test_object_dtype_is_sent_as_opaque() -> None:
    out = decode(encode([np.array([object()], dtype=object)]))
    assert out == [Opaque("ndarray", "dtype object")]


def _frame(header: object, body: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<4sIQQ", b"OPTC", 1, len(h), len(body)) + h + body


BAD = [
    pytest.param(pickle.dumps({"a": 1}), id="pickle"),
    pytest.param(b"\x80\x04garbage" * 10, id="garbage"),
    pytest.param(b"OPTC", id="short"),
    pytest.param(_frame({"$a": [0, "|O", [1]]}, b"\0" * 8), id="object-dtype"),
    pytest.param(_frame({"$a": [0, ">f8", [1]]}, b"\0" * 8), id="big-endian"),
    pytest.param(_frame({"$a": [0, "<f8", [2]]}, b"\0" * 8), id="outside-body"),
    pytest.param(_frame({"$a": [0, "<f8", [-1]]}, b"\0" * 8), id="negative-shape"),
    pytest.param(_frame({"$eval": "__import__('os')"}), id="unknown-tag"),
    pytest.param(_frame({"$t": [], "$d": []}), id="two-tags"),
    pytest.param(_frame({"$ref": ["target", []]}), id="spec-from-child"),
    pytest.param(_frame({"$d": [[[1, 2], 3]]}), id="list-key"),
    pytest.param(_frame(json.loads("[" * 70 + "]" * 70)), id="too-deep"),
    pytest.param(_frame("x") + b"trailing", id="bad-length"),
    pytest.param(struct.pack("<4sIQQ", b"OPTC", 1, 3, 0) + b"\xff\xfe{", id="bad-utf8"),
]


@pytest.mark.parametrize("frame", BAD)
def test_malformed_frames_are_violations(frame: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        decode(frame)


def test_read_frame_checks_the_size_before_reading() -> None:
    r, w = os.pipe()
    try:
        os.write(w, struct.pack("<4sIQQ", b"OPTC", 1, 10, 10**12))
        with pytest.raises(ProtocolViolation, match="more than the limit"):
            _wire.read_frame(r, max_bytes=1 << 20)
        os.write(w, pickle.dumps("x") + b"\0" * 24)
        with pytest.raises(ProtocolViolation, match="marker"):
            _wire.read_frame(r)
    finally:
        os.close(r)
        os.close(w)


def test_read_frame_times_out() -> None:
    import time

    r, w = os.pipe()
    try:
        with pytest.raises(_wire.FrameTimeout):
            _wire.read_frame(r, deadline=time.monotonic() + 0.05)
    finally:
        os.close(r)
        os.close(w)
