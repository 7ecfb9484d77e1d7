"""Large layers and float32 for the gradient-checker benchmark (run by ``bench_gradcheck.py``).

Two layers: a convolution (x of shape (2, 4, 20, 20), w (16, 4, 5, 5), b (16,): 4,816 entries,
padding 2) and an LSTM step (N=4, D=20, H=20: 3,528 entries, two outputs). Each is a torch
function; its buggy twin is a custom ``autograd.Function`` whose backward is autograd's with one
planted bug (the convolution's weight gradient skips the top-left output position; the LSTM's
forget gate is differentiated with ``next_c`` instead of ``prev_c``). Every tool is counted in
calls of the same forward:

* optcheck ``check_torch`` (auto: random directions and localisation above 2,000 entries; and
  ``mode="full"``), and ``check_layer`` on a numpy (out, cache) version of the convolution;
* ``torch.autograd.gradcheck`` slow (the full numerical Jacobian, two forward calls per input
  entry) and fast mode;
* ``scipy.optimize.check_grad`` and ``numdifftools.Gradient`` on the scalar
  ``phi = sum(upstream * layer(inputs))``, whose gradient is the backward's vector-Jacobian
  product with the same upstream (they return a number and a gradient, no verdict; their
  relative error ``|num - grad| / |grad|`` is shown).

Then float32: the same layers and the held-in functions in float32, where a correct gradient
should pass.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numdifftools as nd
import numpy as np
import scipy.optimize
import torch
from numpy.lib.stride_tricks import sliding_window_view

import optcheck

Array = np.ndarray[Any, Any]
F = torch.nn.functional
BIG_ND_CALLS = 400_000  # numdifftools is not run beyond this many estimated calls


class Counter:
    def __init__(self) -> None:
        self.calls = 0


# ------------------------------------------------------------------------------------------------
# the layers (torch), with a planted bug in a custom backward
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Layer:
    name: str
    inputs: tuple[Any, ...]  # float64 tensors
    fn: Callable[..., Any]  # correct (autograd)
    bug: Callable[..., Any]  # the same forward, a custom backward with the planted bug
    counter: Counter
    bug_keys: set[str]

    @property
    def size(self) -> int:
        return sum(t.numel() for t in self.inputs)


def _conv_layer() -> Layer:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 20, 20, generator=g, dtype=torch.float64)
    w = torch.randn(16, 4, 5, 5, generator=g, dtype=torch.float64) * 0.2
    b = torch.randn(16, generator=g, dtype=torch.float64)
    counter = Counter()

    def conv(x: Any, w: Any, b: Any) -> Any:
        counter.calls += 1
        return F.conv2d(x, w, b, padding=2)

    class ConvBug(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
            ctx.save_for_backward(x, w, b)
            counter.calls += 1
            return F.conv2d(x, w, b, padding=2)

        @staticmethod
        def backward(ctx: Any, dout: Any) -> Any:
            x, w, b = ctx.saved_tensors
            with torch.enable_grad():
                xs, ws, bs = (t.detach().requires_grad_(True) for t in (x, w, b))
                dx, dw, db = torch.autograd.grad(F.conv2d(xs, ws, bs, padding=2), (xs, ws, bs), dout)
            xp = F.pad(x, (2, 2, 2, 2))
            # the bug: the top-left output position is left out of the weight gradient
            dw = dw - torch.einsum("nf,nchw->fchw", dout[:, :, 0, 0], xp[:, :, :5, :5])
            return dx, dw, db

    return Layer("convolution (4,816 entries)", (x, w, b), conv, ConvBug.apply, counter, {"w"})


def _lstm_parts(x: Any, h: Any, c: Any, Wx: Any, Wh: Any, b: Any) -> tuple[Any, ...]:
    hd = h.shape[1]
    a = x @ Wx + h @ Wh + b
    i, f = torch.sigmoid(a[:, :hd]), torch.sigmoid(a[:, hd : 2 * hd])
    o, gg = torch.sigmoid(a[:, 2 * hd : 3 * hd]), torch.tanh(a[:, 3 * hd :])
    nc = f * c + i * gg
    return o * torch.tanh(nc), nc, i, f, o, gg


def _lstm_layer() -> Layer:
    g = torch.Generator().manual_seed(6)
    n, d, hd = 4, 20, 20
    inputs = (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, hd, generator=g, dtype=torch.float64),
        torch.randn(n, hd, generator=g, dtype=torch.float64),
        torch.randn(d, 4 * hd, generator=g, dtype=torch.float64) * 0.3,
        torch.randn(hd, 4 * hd, generator=g, dtype=torch.float64) * 0.3,
        torch.randn(4 * hd, generator=g, dtype=torch.float64),
    )
    counter = Counter()

    def lstm_step(x: Any, prev_h: Any, prev_c: Any, Wx: Any, Wh: Any, b: Any) -> Any:
        counter.calls += 1
        nh, nc, *_ = _lstm_parts(x, prev_h, prev_c, Wx, Wh, b)
        return nh, nc

    class LSTMBug(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, prev_h: Any, prev_c: Any, Wx: Any, Wh: Any, b: Any) -> Any:
            counter.calls += 1
            nh, nc, i, f, o, gg = _lstm_parts(x, prev_h, prev_c, Wx, Wh, b)
            h, c = prev_h, prev_c
            ctx.save_for_backward(x, h, c, Wx, Wh, i, f, o, gg, nc)
            return nh, nc

        @staticmethod
        def backward(ctx: Any, dnh: Any, dnc: Any) -> Any:
            x, h, _c, Wx, Wh, i, f, o, gg, nc = ctx.saved_tensors
            tc = torch.tanh(nc)
            dc = dnc + dnh * o * (1 - tc**2)
            df = dc * nc  # the bug: next_c instead of prev_c
            da = torch.cat(
                [dc * gg * i * (1 - i), df * f * (1 - f), dnh * tc * o * (1 - o), dc * i * (1 - gg**2)], 1
            )
            return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, h.T @ da, da.sum(0)

    keys = {"x", "prev_h", "Wx", "Wh", "b"}
    return Layer("LSTM step (3,528 entries)", inputs, lstm_step, LSTMBug.apply, counter, keys)


# ------------------------------------------------------------------------------------------------
# a numpy (out, cache) convolution, for check_layer
# ------------------------------------------------------------------------------------------------


def conv_forward(x: Array, w: Array, b: Array, conv_param: dict[str, int]) -> tuple[Array, Any]:
    pad = conv_param["pad"]
    n, _c, hh, ww = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = sliding_window_view(xp, (kh, kw), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(n * hh * ww, -1)
    out = (cols @ w.reshape(f, -1).T + b).reshape(n, hh, ww, f).transpose(0, 3, 1, 2)
    return out, (x, w, cols, pad)


def conv_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    x, w, cols, pad = cache
    n, c, hh, ww = x.shape
    f, _, kh, kw = w.shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (d2.T @ cols).reshape(w.shape)
    dcols = (d2 @ w.reshape(f, -1)).reshape(n, hh, ww, c, kh, kw)
    dxp = np.zeros((n, c, hh + 2 * pad, ww + 2 * pad), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + hh, j : j + ww] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, pad : pad + hh, pad : pad + ww], dw, dout.sum(axis=(0, 2, 3))


def conv_backward_bug(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    dx, dw, db = conv_backward(dout, cache)
    x, _w, _, pad = cache
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return dx, dw - np.einsum("nf,nchw->fchw", dout[:, :, 0, 0], xp[:, :, :5, :5]), db


# ------------------------------------------------------------------------------------------------
# running the tools
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LayerRow:
    tool: str
    calls: int
    seconds: float
    correct: str
    bug: str
    note: str = ""


def _upstream(layer: Layer, dtype: Any) -> list[Any]:
    with torch.no_grad():
        outs = layer.fn(*(t.detach().to(dtype) for t in layer.inputs))
    outs = outs if isinstance(outs, tuple) else (outs,)
    rng = np.random.default_rng(0)
    return [torch.as_tensor(rng.standard_normal(tuple(o.shape))).to(dtype) for o in outs]


def _phi_and_grad(
    layer: Layer, fn: Callable[..., Any], dtype: Any
) -> tuple[Callable[[Array], float], Array, Array]:
    """``phi(v) = sum(upstream · fn(inputs(v)))`` on a flat numpy vector, its autograd gradient and the point."""
    ups = _upstream(layer, dtype)
    shapes = [tuple(t.shape) for t in layer.inputs]
    sizes = [t.numel() for t in layer.inputs]
    cuts = np.cumsum([0, *sizes])

    def unflat(v: Array) -> list[Any]:
        return [torch.as_tensor(v[cuts[k] : cuts[k + 1]].reshape(s)).to(dtype) for k, s in enumerate(shapes)]

    def phi(v: Array) -> float:
        with torch.no_grad():
            outs = fn(*unflat(np.asarray(v)))
        outs = outs if isinstance(outs, tuple) else (outs,)
        return float(sum((o.double() * u.double()).sum() for o, u in zip(outs, ups, strict=True)))

    v0 = np.concatenate([t.detach().to(dtype).double().numpy().ravel() for t in layer.inputs])
    leaves = [t.detach().clone().requires_grad_(True) for t in unflat(v0)]
    outs = fn(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    total = sum((o * u).sum() for o, u in zip(outs, ups, strict=True))
    grads = torch.autograd.grad(total, leaves)
    return phi, np.concatenate([g.double().numpy().ravel() for g in grads]), v0


def _verdict(report: Any, keys: set[str] | None = None) -> str:
    if report.passed:
        return "pass"
    named = {e.key for e in report.failures}
    if keys is None:
        return "fail"
    return "fail, names " + ("exactly the wrong inputs" if named == keys else f"{sorted(named)}")


def layer_rows(layer: Layer, dtype: Any = torch.float64, with_nd: bool = True) -> list[LayerRow]:
    rows: list[LayerRow] = []
    inputs = tuple(t.detach().to(dtype).clone().requires_grad_(True) for t in layer.inputs)
    c = layer.counter
    for mode in ("auto", "full") if with_nd else ("auto",):
        c.calls = 0
        t = time.perf_counter()
        ok = optcheck.check_torch(layer.fn, *inputs, mode=mode)
        secs, calls = time.perf_counter() - t, c.calls
        bad = optcheck.check_torch(layer.bug, *inputs, mode=mode)
        rows.append(
            LayerRow(
                f"optcheck check_torch ({mode})",
                calls,
                secs,
                _verdict(ok),
                _verdict(bad, layer.bug_keys),
                f"mode {ok.mode}, {ok.method}",
            )
        )
    for fast in (False, True):
        c.calls = 0
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok_t = torch.autograd.gradcheck(layer.fn, inputs, fast_mode=fast, raise_exception=False)
            secs, calls = time.perf_counter() - t, c.calls
            bad_t = torch.autograd.gradcheck(layer.bug, inputs, fast_mode=fast, raise_exception=False)
        rows.append(
            LayerRow(
                f"torch gradcheck ({'fast' if fast else 'slow'})",
                calls,
                secs,
                "pass" if ok_t else "FAIL",
                "fail" if not bad_t else "pass (missed)",
                "one random projection" if fast else "full Jacobian, eps=1e-6",
            )
        )
    phi, grad, v0 = _phi_and_grad(layer, layer.fn, dtype)
    _, grad_bug, _ = _phi_and_grad(layer, layer.bug, dtype)
    scale = float(np.linalg.norm(grad))
    c.calls = 0
    t = time.perf_counter()
    value = scipy.optimize.check_grad(phi, lambda v: grad, v0)
    secs, calls = time.perf_counter() - t, c.calls
    value_bug = scipy.optimize.check_grad(phi, lambda v: grad_bug, v0)
    rows.append(
        LayerRow(
            "scipy check_grad",
            calls,
            secs,
            f"{value / scale:.1e}",
            f"{value_bug / scale:.1e}",
            "relative error |num - grad|/|grad|; no verdict",
        )
    )
    estimate = 31 * v0.size
    if not with_nd:
        rows.append(
            LayerRow("numdifftools Gradient", estimate, math.nan, "not run", "-", "not run in float32 (time)")
        )
    elif estimate <= BIG_ND_CALLS:
        c.calls = 0
        t = time.perf_counter()
        num = nd.Gradient(phi)(v0)
        secs, calls = time.perf_counter() - t, c.calls
        rel, rel_bug = (float(np.linalg.norm(num - g) / np.linalg.norm(g)) for g in (grad, grad_bug))
        rows.append(
            LayerRow(
                "numdifftools Gradient",
                calls,
                secs,
                f"{rel:.1e}",
                f"{rel_bug:.1e}",
                "relative error; no verdict",
            )
        )
    else:
        rows.append(
            LayerRow("numdifftools Gradient", estimate, math.nan, "not run", "-", f"about {estimate} calls")
        )
    return rows


def check_layer_row(dtype: Any = np.float64) -> LayerRow:
    """check_layer on the numpy (out, cache) convolution (its own forward, counted)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 20, 20)).astype(dtype)
    w = (rng.normal(size=(16, 4, 5, 5)) * 0.2).astype(dtype)
    b = rng.normal(size=16).astype(dtype)
    calls = [0]

    def forward(x: Array, w: Array, b: Array, conv_param: dict[str, int]) -> tuple[Array, Any]:
        calls[0] += 1
        return conv_forward(x, w, b, conv_param)

    t = time.perf_counter()
    ok = optcheck.check_layer(forward, conv_backward, (x, w, b, {"pad": 2}))
    secs, n = time.perf_counter() - t, calls[0]
    bad = optcheck.check_layer(forward, conv_backward_bug, (x, w, b, {"pad": 2}))
    return LayerRow(
        "optcheck check_layer, numpy (out, cache)",
        n,
        secs,
        _verdict(ok),
        _verdict(bad, {"w"}),
        f"mode {ok.mode}, {ok.method}",
    )


def float32_rows(problems: list[Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(case, optcheck verdict, gradcheck slow, gradcheck fast, scipy rel. error, numdifftools rel. error)."""
    out = []
    for p in problems:
        x = torch.tensor(p.x, dtype=torch.float32, requires_grad=True)
        mine = optcheck.check_torch(p.tf, x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow = torch.autograd.gradcheck(p.tf, (x,), raise_exception=False)
            fast = torch.autograd.gradcheck(p.tf, (x,), fast_mode=True, raise_exception=False)
        v0 = x.detach().double().numpy()

        def phi(v: Array, tf: Callable[[Any], Any] = p.tf) -> float:
            with torch.no_grad():
                return float(tf(torch.as_tensor(v, dtype=torch.float32)))

        xs = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(p.tf(xs), (xs,))
        grad = g.double().numpy()
        norm = float(np.linalg.norm(grad))
        sc = scipy.optimize.check_grad(phi, lambda v, g=grad: g, v0) / norm
        num = nd.Gradient(phi)(v0)
        ndr = float(np.linalg.norm(num - grad) / norm)
        out.append(
            (
                p.name,
                "pass" if mine.passed else "FAIL",
                "pass" if slow else "FAIL",
                "pass" if fast else "FAIL",
                f"{sc:.1e}",
                f"{ndr:.1e}",
            )
        )
    return out
