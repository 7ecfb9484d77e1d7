"""The audit's wire format: a tagged binary framing that carries plain data and nothing else.

One frame is ``b"OPTC"``, a format version, the length of a UTF-8 JSON header and the length of
a body of raw array buffers, then the header and the body. The JSON tree uses tagged objects only
(``{"$a": [offset, dtype, shape]}`` an array in the body, ``{"$t": [...]}`` a tuple, ``{"$d":
[[key, value], ...]}`` a dict, ...); numbers, strings, booleans and null are JSON's own (NaN, the
infinities and -0.0 survive). Nothing is pickled, evaluated or imported when a frame is read.

:func:`decode` is strict: an unknown tag, a non-numeric or big-endian dtype, a shape or offset
outside the body, too deep or too large a tree, or bad JSON raise :class:`ProtocolViolation`.
The parent decodes replies with ``specs=False``: only plain data, :class:`Obj` and
:class:`Opaque` are accepted from the child.

This module imports only the standard library and numpy: the audit's child process imports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import select
import struct
import time
from typing import Any

import numpy as np

__all__ = [
    "TARGET",
    "Closure",
    "GradFn",
    "LinearLoss",
    "Obj",
    "Opaque",
    "ProtocolViolation",
    "Recorder",
    "Ref",
    "Tensor",
    "decode",
    "encode",
    "read_frame",
    "write_frame",
]

MAGIC = b"OPTC"
VERSION = 1
_HEAD = struct.Struct("<4sIQQ")

#: The dtypes an array may have on the wire (numpy's ``dtype.str``).
DTYPES = frozenset(["|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8"])

MAX_DEPTH = 64
MAX_NODES = 1_000_000
MAX_STR = 100_000
MAX_NDIM = 32


class ProtocolViolation(Exception):
    """A frame that is not valid: the other side broke the protocol (or is not our child at all)."""


# ---------------------------------------------------------------------------------------------
# Tagged values
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ref:
    """An object in the child's handle table, optionally navigated: ``Ref("opt").attr("state").item(p)``.

    ``path`` holds ``("attr", name)`` and ``("item", key)`` steps; a key may itself be a ``Ref``.
    """

    name: str
    path: tuple[tuple[str, Any], ...] = ()

    def attr(self, name: str) -> Ref:
        """``getattr(obj, name)``."""
        return Ref(self.name, (*self.path, ("attr", name)))

    def item(self, key: Any) -> Ref:
        """``obj[key]`` (``key`` plain data or a ``Ref``)."""
        return Ref(self.name, (*self.path, ("item", key)))


#: The loaded target.
TARGET = Ref("target")


#: The torch dtypes a :class:`Tensor` may be cast to in the child (numpy has no bfloat16).
TENSOR_DTYPES = frozenset({"bfloat16", "float16"})


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    """A torch tensor made in the child from ``array`` (a ``torch.nn.Parameter`` when ``parameter``).

    ``dtype`` (one of :data:`TENSOR_DTYPES`) casts it in the child, for dtypes numpy lacks.
    """

    array: np.ndarray
    requires_grad: bool = False
    parameter: bool = False
    dtype: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class GradFn:
    """A callable made in the child that returns ``grads[0]``, ``grads[1]``, ... in turn.

    Each element is a plain tree (an array, a dict of arrays, ...); ``tensor`` turns arrays into
    torch tensors. Every call records a snapshot of its arguments in the object's ``calls`` list;
    a call past the last gradient raises ``IndexError``.
    """

    grads: list[Any]
    tensor: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class Recorder:
    """A callable made in the child (a callback) that records snapshots of its arguments in ``calls``."""

    returns: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Closure:
    """A zero-argument callable made in the child that returns ``value`` (torch's ``step(closure)``)."""

    value: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class LinearLoss:
    """A real torch closure made in the child: it recomputes ``loss = Σ (grads[i] * params[i]).sum()``.

    Called by ``optimizer.step(closure)``, it clears each parameter's ``.grad``, computes the loss
    from the parameters with autograd enabled, calls ``loss.backward()`` (so that each ``.grad``
    becomes exactly ``grads[i]``, in the parameter's dtype) and returns the loss.
    """

    params: list[Any]  # Refs to the parameters
    grads: list[np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Obj:
    """A snapshot of an object: its type's qualified name and its attributes (plain trees).

    ``items`` holds a namedtuple's fields in order (``None`` for other objects).
    """

    type: str
    attrs: dict[str, Any]
    items: tuple[Any, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Opaque:
    """Something the child would not send as data: a function, a module, an object-dtype array..."""

    type: str
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


class _Encoder:
    def __init__(self, max_bytes: int) -> None:
        self.buffers: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes

    def array(self, a: np.ndarray) -> Any:
        if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
            return {"$opaque": ["ndarray", f"dtype {a.dtype}"]}
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        data = a.tobytes()
        offset = self.size
        self.size += len(data)
        if self.size > self.max_bytes:
            raise OverflowError(f"more than {self.max_bytes} bytes")
        self.buffers.append(data)
        return {"$a": [offset, a.dtype.str, list(a.shape)]}

    def enc(self, x: Any) -> Any:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            return float(x)
        if isinstance(x, np.ndarray):
            return self.array(x)
        if isinstance(x, np.generic):
            if x.dtype.kind == "b":
                return bool(x)
            if x.dtype.kind in "iu":
                return int(x)
            if x.dtype.kind == "f":
                return float(x)
            return {"$opaque": [type(x).__name__, f"dtype {x.dtype}"]}
        if isinstance(x, list):
            return [self.enc(v) for v in x]
        if isinstance(x, tuple):
            return {"$t": [self.enc(v) for v in x]}
        if isinstance(x, dict):
            return {"$d": [[self.enc(k), self.enc(v)] for k, v in x.items()]}
        if isinstance(x, Ref):
            return {"$ref": [x.name, [[kind, self.enc(key)] for kind, key in x.path]]}
        if isinstance(x, Tensor):
            enc = [self.array(np.asarray(x.array)), bool(x.requires_grad), bool(x.parameter)]
            return {"$tensor": enc if x.dtype is None else [*enc, str(x.dtype)]}
        if isinstance(x, GradFn):
            return {"$gradfn": [[self.enc(g) for g in x.grads], bool(x.tensor)]}
        if isinstance(x, Recorder):
            return {"$rec": self.enc(x.returns)}
        if isinstance(x, Closure):
            return {"$closure": self.enc(x.value)}
        if isinstance(x, LinearLoss):
            return {"$loss": [[self.enc(p) for p in x.params], [self.array(np.asarray(g)) for g in x.grads]]}
        if isinstance(x, Obj):
            items = None if x.items is None else [self.enc(v) for v in x.items]
            return {"$obj": [x.type, self.enc(dict(x.attrs)), items]}
        if isinstance(x, Opaque):
            return {"$opaque": [x.type, x.note]}
        raise TypeError(f"cannot encode a {type(x).__name__}")


def encode(value: Any, max_bytes: int = 2**62) -> bytes:
    """One frame holding ``value``; ``OverflowError`` when it would exceed ``max_bytes``."""
    e = _Encoder(max_bytes)
    tree = e.enc(value)
    header = json.dumps(tree, separators=(",", ":"), allow_nan=True).encode("utf-8")
    total = _HEAD.size + len(header) + e.size
    if total > max_bytes:
        raise OverflowError(f"{total} bytes, more than {max_bytes}")
    return b"".join([_HEAD.pack(MAGIC, VERSION, len(header), e.size), header, *e.buffers])


# ---------------------------------------------------------------------------------------------
# Decoding (strict)
# ---------------------------------------------------------------------------------------------

_SPEC_TAGS = frozenset(["$ref", "$tensor", "$gradfn", "$rec", "$closure", "$loss"])
_PLAIN_TAGS = frozenset(["$a", "$t", "$d", "$obj", "$opaque"])


class _Decoder:
    def __init__(self, body: memoryview, specs: bool) -> None:
        self.body = body
        self.tags = _PLAIN_TAGS | (_SPEC_TAGS if specs else frozenset())
        self.nodes = 0

    def fail(self, why: str) -> ProtocolViolation:
        return ProtocolViolation(why)

    def array(self, v: Any) -> np.ndarray:
        if not (isinstance(v, list) and len(v) == 3):
            raise self.fail("an array tag is not [offset, dtype, shape]")
        offset, dtype, shape = v
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise self.fail("an array offset is not a non-negative integer")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise self.fail(
                f"an array has dtype {str(dtype)[:40]!r}; only numeric little-endian dtypes are accepted"
            )
        if not isinstance(shape, list) or len(shape) > MAX_NDIM:
            raise self.fail("an array shape is not a list of at most 32 sizes")
        n = 1
        for s in shape:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise self.fail("an array shape holds something other than sizes")
            n *= s
        dt = np.dtype(dtype)
        nbytes = n * dt.itemsize
        if offset + nbytes > len(self.body):
            raise self.fail("an array lies outside the frame's body")
        a = np.frombuffer(self.body, dtype=dt, count=n, offset=offset).reshape(shape)
        out = a.astype(dt.newbyteorder("="), copy=True)
        return out

    def dec(self, x: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"more than {MAX_NODES} values in one frame")
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH}")
        if x is None or isinstance(x, (bool, int, float)):
            return x
        if isinstance(x, str):
            if len(x) > MAX_STR:
                raise self.fail(f"a string longer than {MAX_STR} characters")
            return x
        if isinstance(x, list):
            return [self.dec(v, depth + 1) for v in x]
        if not isinstance(x, dict) or len(x) != 1:
            raise self.fail("an object that is not a single tag")
        ((tag, v),) = x.items()
        if tag not in self.tags:
            raise self.fail(f"unknown tag {str(tag)[:40]!r}")
        if tag == "$a":
            return self.array(v)
        if tag == "$t":
            if not isinstance(v, list):
                raise self.fail("a tuple tag does not hold a list")
            return tuple(self.dec(e, depth + 1) for e in v)
        if tag == "$d":
            if not isinstance(v, list):
                raise self.fail("a dict tag does not hold a list")
            out: dict[Any, Any] = {}
            for pair in v:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise self.fail("a dict entry is not [key, value]")
                key = self.dec(pair[0], depth + 1)
                if not _plain_key(key):
                    raise self.fail("a dict key is not a plain value")
                out[key] = self.dec(pair[1], depth + 1)
            return out
        if tag == "$obj":
            if not (isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)):
                raise self.fail("an object tag is not [type, attrs, items]")
            attrs = self.dec(v[1], depth + 1)
            if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
                raise self.fail("an object's attributes are not a dict keyed by names")
            items = None if v[2] is None else self.dec({"$t": v[2]}, depth + 1)
            return Obj(v[0][:200], attrs, items)
        if tag == "$opaque":
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v)):
                raise self.fail("an opaque tag is not [type, note]")
            return Opaque(v[0][:200], v[1][:500])
        if tag == "$ref":
            if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], list)):
                raise self.fail("a ref tag is not [name, path]")
            path = []
            for step in v[1]:
                if not (isinstance(step, list) and len(step) == 2 and step[0] in ("attr", "item")):
                    raise self.fail("a ref step is not [attr|item, key]")
                path.append((step[0], self.dec(step[1], depth + 1)))
            return Ref(v[0], tuple(path))
        if tag == "$tensor":
            if not (isinstance(v, list) and len(v) in (3, 4)):
                raise self.fail("a tensor tag is not [array, requires_grad, parameter(, dtype)]")
            arr = self.dec(v[0], depth + 1)
            if not isinstance(arr, np.ndarray):
                raise self.fail("a tensor tag does not hold an array")
            dtype = v[3] if len(v) == 4 else None
            if dtype is not None and dtype not in TENSOR_DTYPES:
                raise self.fail(
                    f"a tensor tag names dtype {str(dtype)[:40]!r}; expected one of {sorted(TENSOR_DTYPES)}"
                )
            return Tensor(arr, bool(v[1]), bool(v[2]), dtype)
        if tag == "$gradfn":
            if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], list)):
                raise self.fail("a gradfn tag is not [grads, tensor]")
            return GradFn([self.dec(g, depth + 1) for g in v[0]], bool(v[1]))
        if tag == "$rec":
            return Recorder(self.dec(v, depth + 1))
        if tag == "$closure":
            return Closure(self.dec(v, depth + 1))
        if tag == "$loss":
            if not (
                isinstance(v, list) and len(v) == 2 and isinstance(v[0], list) and isinstance(v[1], list)
            ):
                raise self.fail("a loss tag is not [params, grads]")
            params = [self.dec(p, depth + 1) for p in v[0]]
            grads = [self.dec(g, depth + 1) for g in v[1]]
            if len(params) != len(grads) or not all(isinstance(p, Ref) for p in params):
                raise self.fail("a loss tag does not pair parameter refs with gradient arrays")
            if not all(isinstance(g, np.ndarray) for g in grads):
                raise self.fail("a loss tag's gradients are not arrays")
            return LinearLoss(params, grads)
        raise self.fail(f"unknown tag {tag!r}")  # pragma: no cover - the tag set is checked above


def _plain_key(k: Any) -> bool:
    if k is None or isinstance(k, (bool, int, float, str, Opaque)):
        return True
    return isinstance(k, tuple) and all(_plain_key(e) for e in k)


def _reject_constant(name: str) -> Any:
    if name in ("NaN", "Infinity", "-Infinity"):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]
    raise ProtocolViolation(f"bad JSON constant {name!r}")


def decode(frame: bytes | bytearray | memoryview, *, specs: bool = False) -> Any:
    """The value held by one complete frame; :class:`ProtocolViolation` when it is not valid."""
    view = memoryview(frame)
    if len(view) < _HEAD.size:
        raise ProtocolViolation("a frame shorter than its header")
    magic, version, hlen, blen = _HEAD.unpack_from(view)
    if magic != MAGIC or version != VERSION:
        raise ProtocolViolation(
            f"a frame that does not start with the protocol's marker (got {bytes(view[:8])!r})"
        )
    if _HEAD.size + hlen + blen != len(view):
        raise ProtocolViolation("a frame whose length does not match its header")
    try:
        tree = json.loads(
            bytes(view[_HEAD.size : _HEAD.size + hlen]).decode("utf-8"), parse_constant=_reject_constant
        )
    except ProtocolViolation:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolViolation(f"a header that is not valid JSON ({type(e).__name__})") from None
    try:
        return _Decoder(view[_HEAD.size + hlen :], specs).dec(tree, 0)
    except RecursionError:
        raise ProtocolViolation("nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# Frames on file descriptors
# ---------------------------------------------------------------------------------------------


class FrameTimeout(Exception):
    """No complete frame arrived before the deadline."""


def write_frame(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (blocking)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise FrameTimeout()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, *, deadline: float | None = None, max_bytes: int = 2**62) -> bytes:
    """Read one frame from ``fd``.

    ``FrameTimeout`` past ``deadline`` (a ``time.monotonic()`` value), ``EOFError`` when the
    writer closed, :class:`ProtocolViolation` for a bad marker or a frame over ``max_bytes``
    (checked from the header, before the body is read).
    """
    head = _read_exact(fd, _HEAD.size, deadline)
    magic, version, hlen, blen = _HEAD.unpack(head)
    if magic != MAGIC or version != VERSION:
        raise ProtocolViolation(f"a frame that does not start with the protocol's marker (got {head[:8]!r})")
    if _HEAD.size + hlen + blen > max_bytes:
        raise ProtocolViolation(
            f"a reply of {_HEAD.size + hlen + blen:,} bytes, more than the limit of {max_bytes:,} (--max-reply)"
        )
    return head + _read_exact(fd, hlen + blen, deadline)
