"""Tests of optcheck.check_layer: layers written fresh in the (out, cache) convention, one call each.

Every layer passes in float64 and float32 with one ``check_layer`` call; a planted bug in each is
named by key and index: the entries the report names are exactly the entries where the buggy
gradient differs from the correct one (all of those that differ by more than a millionth of the
gradient's scale, and none that do not differ at all). Then the plain convention, dict inputs
and outputs, stateful layer objects with ``reset``, and the errors for a forward or backward that
does not fit the convention assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import optcheck
from optcheck import UsageError
from optcheck.gradcheck import GradientReport, check_layer

Array = np.ndarray[Any, Any]
rng = np.random.default_rng(1616)

# ------------------------------------------------------------------------------------------------
# layers, (out, cache) convention, written for these tests
# ------------------------------------------------------------------------------------------------


def affine_forward(x: Array, w: Array, b: Array) -> tuple[Array, Any]:
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def affine_backward_bug(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    dx, dw, db = affine_backward(dout, cache)
    x, _ = cache
    dw = x.reshape(x.shape[0], -1)[:-1].T @ dout[:-1]  # drops the last example from dw
    return dx, dw, db


def relu_forward(x: Array) -> tuple[Array, Any]:
    return np.maximum(x, 0), x


def relu_backward(dout: Array, cache: Any) -> Array:
    return dout * (cache > 0)


def relu_backward_bug(dout: Array, cache: Any) -> Array:
    return (cache > 0).astype(dout.dtype)  # forgets the upstream gradient


def batchnorm_forward(x: Array, gamma: Array, beta: Array, bn_param: dict[str, Any]) -> tuple[Array, Any]:
    eps = bn_param.get("eps", 1e-5)
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    momentum = bn_param.get("momentum", 0.9)
    bn_param["running_mean"] = momentum * bn_param.get("running_mean", 0.0) + (1 - momentum) * mu
    return gamma * xhat + beta, (xhat, xc, std, gamma)


def batchnorm_backward(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    """The staged form: back through every node of the computational graph."""
    xhat, xc, std, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dxc = dxhat / std
    dstd = -(dxhat * xc).sum(axis=0) / std**2
    dvar = dstd / (2 * std)
    dxc = dxc + 2 * xc * dvar / n
    dmu = -dxc.sum(axis=0)
    dx = dxc + dmu / n
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    """The simplified closed form."""
    xhat, _, std, gamma = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (n * std)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_bug(dout: Array, cache: Any) -> tuple[Array, Array, Array]:
    _, dgamma, dbeta = batchnorm_backward_alt(dout, cache)
    _, _, std, gamma = cache
    return dout * gamma / std, dgamma, dbeta  # treats the batch mean and variance as constants


def conv_forward(x: Array, w: Array, b: Array, conv_param: dict[str, int]) -> tuple[Array, Any]:
    stride, pad = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    out = np.zeros((n, f, ho, wo), dtype=np.result_type(x, w))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", patch, w) + b
    return out, (x, w, conv_param)


def conv_backward(dout: Array, cache: Any, bug: bool = False) -> tuple[Array, Array, Array]:
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    _, _, hh, ww = w.shape
    ho, wo = dout.shape[2:]
    for i in range(ho):
        for j in range(wo):
            sl = (
                slice(None),
                slice(None),
                slice(i * stride, i * stride + hh),
                slice(j * stride, j * stride + ww),
            )
            if not (bug and i == 0 and j == 0):  # the bug: the top-left output position is skipped in dw
                dw += np.einsum("nf,nchw->fchw", dout[:, :, i, j], xp[sl])
            dxp[sl] += np.einsum("nf,fchw->nchw", dout[:, :, i, j], w)
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def maxpool_forward(x: Array, pool_param: dict[str, int]) -> tuple[Array, Any]:
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n, c, h, w = x.shape
    ho, wo = 1 + (h - ph) // s, 1 + (w - pw) // s
    out = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * s : i * s + ph, j * s : j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def maxpool_backward(dout: Array, cache: Any, bug: bool = False) -> Array:
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    n, c = x.shape[:2]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s : i * s + ph, j * s : j * s + pw].reshape(n, c, -1)
            k = (window.argmin if bug and (i, j) == (1, 0) else window.argmax)(axis=2)
            r, q = np.unravel_index(k, (ph, pw))
            nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
            dx[nn, cc, i * s + r, j * s + q] += dout[:, :, i, j]
    return dx


def softmax_loss_forward(x: Array, y: Array) -> tuple[Any, Any]:
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    return -logp[np.arange(n), y].sum() / n, (logp, y)


def softmax_loss_backward(dloss: Any, cache: Any, bug: bool = False) -> Array:
    logp, y = cache
    n = logp.shape[0]
    dx = np.exp(logp)
    dx[np.arange(n), y] -= 1
    return dloss * dx / (1 if bug else n)  # the bug: the 1/N of the mean is missing


def svm_loss_forward(x: Array, y: Array) -> tuple[Any, Any]:
    n = x.shape[0]
    correct = x[np.arange(n), y][:, None]
    margins = np.maximum(0, x - correct + 1.0)
    margins[np.arange(n), y] = 0
    return margins.sum() / n, (margins, y)


def svm_loss_backward(dloss: Any, cache: Any, bug: bool = False) -> Array:
    margins, y = cache
    n = margins.shape[0]
    dx = (margins > 0).astype(margins.real.dtype)
    if not bug:  # the bug: the correct class's -count is forgotten
        dx[np.arange(n), y] -= dx.sum(axis=1)
    return dloss * dx / n


def rnn_step_forward(x: Array, prev_h: Array, Wx: Array, Wh: Array, b: Array) -> tuple[Array, Any]:
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h: Array, cache: Any, bug: bool = False) -> tuple[Array, ...]:
    x, prev_h, Wx, Wh, next_h = cache
    dz = dnext_h * (1 - next_h**2)
    dWh = (next_h if bug else prev_h).T @ dz  # the bug: next_h instead of prev_h
    return dz @ Wx.T, dz @ Wh.T, x.T @ dz, dWh, dz.sum(axis=0)


def _sigmoid(z: Array) -> Array:
    return 1 / (1 + np.exp(-z))


def lstm_step_forward(
    x: Array, prev_h: Array, prev_c: Array, Wx: Array, Wh: Array, b: Array
) -> tuple[Array, Array, Any]:
    hd = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = (
        _sigmoid(a[:, :hd]),
        _sigmoid(a[:, hd : 2 * hd]),
        _sigmoid(a[:, 2 * hd : 3 * hd]),
        np.tanh(a[:, 3 * hd :]),
    )
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h: Array, dnext_c: Array, cache: Any, bug: bool = False) -> tuple[Array, ...]:
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc**2)
    do = dnext_h * tc
    di, dg = dc * g, dc * i
    df = dc * (next_c if bug else prev_c)  # the bug: next_c instead of prev_c
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)], axis=1)
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)


# ------------------------------------------------------------------------------------------------
# the cases: (forward, backward, buggy backward, inputs)
# ------------------------------------------------------------------------------------------------


def _n(*shape: int, scale: float = 1.0) -> Array:
    return rng.normal(size=shape) * scale


def _relu_x() -> Array:
    x = _n(4, 6)
    x[0, 0] = x[1, 3] = x[3, 5] = 0.0  # exact zeros: the kink
    return x


def _pool_x() -> Array:
    x = _n(2, 2, 4, 4)
    return x


N, D, H = 3, 4, 5
CASES: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = {
    "affine": (affine_forward, affine_backward, affine_backward_bug, (_n(4, 2, 3), _n(6, 5), _n(5))),
    "relu": (relu_forward, relu_backward, relu_backward_bug, (_relu_x(),)),
    "batchnorm": (
        batchnorm_forward,
        batchnorm_backward,
        batchnorm_backward_bug,
        (_n(6, 4, scale=2.0) + 1.0, _n(4) + 1.0, _n(4), {"eps": 1e-5, "momentum": 0.9}),
    ),
    "batchnorm-alt": (
        batchnorm_forward,
        batchnorm_backward_alt,
        batchnorm_backward_bug,
        (_n(6, 4, scale=2.0) + 1.0, _n(4) + 1.0, _n(4), {"eps": 1e-5}),
    ),
    "conv": (
        conv_forward,
        conv_backward,
        lambda dout, cache: conv_backward(dout, cache, bug=True),
        (_n(2, 2, 5, 5), _n(3, 2, 3, 3, scale=0.5), _n(3), {"stride": 2, "pad": 1}),
    ),
    "maxpool": (
        maxpool_forward,
        maxpool_backward,
        lambda dout, cache: maxpool_backward(dout, cache, bug=True),
        (_pool_x(), {"pool_height": 2, "pool_width": 2, "stride": 2}),
    ),
    "softmax-loss": (
        softmax_loss_forward,
        softmax_loss_backward,
        lambda d, c: softmax_loss_backward(d, c, bug=True),
        (_n(5, 4), rng.integers(0, 4, size=5)),
    ),
    "svm-loss": (
        svm_loss_forward,
        svm_loss_backward,
        lambda d, c: svm_loss_backward(d, c, bug=True),
        (_n(5, 4, scale=0.5), rng.integers(0, 4, size=5)),
    ),
    "rnn-step": (
        rnn_step_forward,
        rnn_step_backward,
        lambda d, c: rnn_step_backward(d, c, bug=True),
        (_n(N, D), _n(N, H), _n(D, H, scale=0.5), _n(H, H, scale=0.5), _n(H)),
    ),
    "lstm-step": (
        lstm_step_forward,
        lstm_step_backward,
        lambda dh, dc, c: lstm_step_backward(dh, dc, c, bug=True),
        (_n(N, D), _n(N, H), _n(N, H), _n(D, 4 * H, scale=0.5), _n(H, 4 * H, scale=0.5), _n(4 * H)),
    ),
}


def _cast(inputs: tuple[Any, ...], dtype: type) -> tuple[Any, ...]:
    return tuple(v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v for v in inputs)


def _wrong_entries(case: str, tol: float) -> dict[str, set[tuple[int, ...]]]:
    """Where the buggy backward's gradients differ from the correct one's, by more than ``tol`` x their scale."""
    forward, backward, buggy, inputs = CASES[case]
    res = forward(*inputs)
    outs, cache = list(res[:-1]), res[-1]
    ups = [
        np.ones(()) if np.ndim(o) == 0 else np.random.default_rng(0).standard_normal(np.shape(o))
        for o in outs
    ]
    good = backward(*ups, cache)
    bad = buggy(*ups, cache)
    good = good if isinstance(good, tuple) else (good,)
    bad = bad if isinstance(bad, tuple) else (bad,)
    names = optcheck.gradcheck._layer._param_names(forward, len(inputs))
    assert names is not None
    diff_names = [
        n for n, v in zip(names, inputs, strict=True) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
    ]
    out: dict[str, set[tuple[int, ...]]] = {}
    for n, g, b in zip(diff_names, good, bad, strict=True):
        d = np.abs(np.asarray(g) - np.asarray(b))
        scale = max(float(np.max(np.abs(g))), 1e-300)
        out[n] = {tuple(int(i) for i in ix) for ix in np.argwhere(d > tol * scale)}
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_correct_layers_pass_with_one_call(case: str, dtype: type) -> None:
    forward, backward, _, inputs = CASES[case]
    inputs = _cast(inputs, dtype)
    before = [np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in inputs]
    report = check_layer(forward, backward, inputs)
    assert isinstance(report, GradientReport)
    assert report.passed, str(report)
    assert any("(out, cache) convention" in n for n in report.notes), report.notes
    # entries are named by forward's parameter names
    assert {c.key for c in report.coverage} <= {
        "x",
        "w",
        "b",
        "gamma",
        "beta",
        "prev_h",
        "prev_c",
        "Wx",
        "Wh",
    }
    for v, w in zip(inputs, before, strict=True):  # inputs never modified
        if isinstance(v, np.ndarray):
            assert v.dtype == w.dtype and np.array_equal(v, w)
    if case == "relu":  # the exact zeros are reported as kinks, whatever the method
        assert {e.index for e in report.nondifferentiable} == {(0, 0), (1, 3), (3, 5)}


@pytest.mark.parametrize("case", list(CASES))
def test_a_planted_bug_is_named_by_key_and_index(case: str) -> None:
    forward, _, buggy, inputs = CASES[case]
    report = check_layer(forward, buggy, inputs, mode="full")
    assert not report.passed
    named: dict[str, set[tuple[int, ...]]] = {}
    for e in report.failures:
        assert e.index is not None, e
        named.setdefault(e.key, set()).add(e.index)
    must = {k: v for k, v in _wrong_entries(case, 1e-6).items() if v}
    may = _wrong_entries(case, 0.0)
    assert must, "the planted bug changes nothing"
    assert set(named) == set(must), (named.keys(), must.keys())
    for key, idx in named.items():
        assert must[key] <= idx <= may[key], (key, must[key] - idx, idx - may[key])


def test_batchnorm_accepts_both_backward_forms_and_keeps_the_users_bn_param() -> None:
    forward, _, _, (x, gamma, beta, bn_param) = CASES["batchnorm"]
    bn = dict(bn_param)
    for backward in (batchnorm_backward, batchnorm_backward_alt):
        assert check_layer(forward, backward, (x, gamma, beta, bn)).passed
    assert bn == bn_param  # forward updates running statistics in fresh copies, never in the given dict


def test_the_factor_hint_names_the_users_gradient() -> None:
    forward, _, buggy, inputs = CASES["softmax-loss"]
    report = check_layer(forward, buggy, inputs)
    assert any(h.startswith("dx is 5 x the numerical gradient") for h in report.hints), report.hints


# ------------------------------------------------------------------------------------------------
# other calling styles
# ------------------------------------------------------------------------------------------------


def test_plain_convention_backward_takes_dout_and_the_inputs() -> None:
    x, w, b = _n(4, 3), _n(3, 2), _n(2)

    def forward(x: Array, w: Array, b: Array) -> Array:
        return np.tanh(x @ w + b)

    def backward(dout: Array, x: Array, w: Array, b: Array) -> tuple[Array, Array, Array]:
        dz = dout * (1 - np.tanh(x @ w + b) ** 2)
        return dz @ w.T, x.T @ dz, dz.sum(axis=0)

    report = check_layer(forward, backward, (x, w, b))
    assert report.passed, str(report)
    assert any("plain convention" in n for n in report.notes)

    def backward_bug(dout: Array, x: Array, w: Array, b: Array) -> tuple[Array, Array, Array]:
        dx, dw, db = backward(dout, x, w, b)
        dw = dw.copy()
        dw[2, 1] *= 1.01
        return dx, dw, db

    bad = check_layer(forward, backward_bug, (x, w, b))
    assert [e.where for e in bad.failures] == ["w[2, 1]"]


def test_dict_inputs_by_keyword_dict_gradients_and_names_for_positional_inputs() -> None:
    x, w = _n(3, 4), _n(4, 2)

    def forward(inp: Array, weight: Array) -> tuple[Array, Any]:
        return inp @ weight, (inp, weight)

    def backward(dout: Array, cache: Any) -> dict[str, Array]:
        inp, weight = cache
        return {"dweight": inp.T @ dout, "dinp": dout @ weight.T}

    report = check_layer(forward, backward, {"weight": w, "inp": x})  # by keyword: order does not matter
    assert report.passed, str(report)
    assert any("prefix 'd'" in n for n in report.notes), report.notes

    def backward_tuple(dout: Array, cache: Any) -> tuple[Array, Array]:
        grads = backward(dout, cache)
        return grads["dinp"], grads["dweight"]

    report = check_layer(lambda *a: forward(*a), backward_tuple, (x, w), names=("X", "W"))
    assert report.passed and [c.key for c in report.coverage] == ["X", "W"]
    report = check_layer(lambda *a: forward(*a), backward_tuple, (x, w))
    assert [c.key for c in report.coverage] == ["input0", "input1"]


def test_lstm_step_with_dict_outputs_and_given_upstreams() -> None:
    forward, backward, _, inputs = CASES["lstm-step"]

    def fwd(*args: Array) -> tuple[dict[str, Array], Any]:
        h, c, cache = forward(*args)
        return {"h": h, "c": c}, cache

    def bwd(dout: dict[str, Array], cache: Any) -> tuple[Array, ...]:
        return backward(dout["h"], dout["c"], cache)  # type: ignore[no-any-return]

    names = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")
    ups = {"h": _n(N, H), "c": _n(N, H)}
    assert check_layer(fwd, bwd, inputs, names=names, upstream=ups).passed
    # with a tuple of upstreams, one per output, for the (h, c, cache) form
    assert check_layer(forward, backward, inputs, upstream=(ups["h"], ups["c"])).passed
    # only dnext_c: the h path is not exercised, and a bug there goes unseen; both upstreams catch it
    zero_h = (np.zeros((N, H)), ups["c"])
    report = check_layer(forward, CASES["lstm-step"][2], inputs, upstream=zero_h)
    assert not report.passed  # the forget-gate bug sits on the c path


def test_only_some_inputs_differentiated_with_wrt() -> None:
    x, w = _n(3, 4), _n(4, 2)
    mask = (rng.random((3, 2)) > 0.5).astype(np.float64)  # a float input that is not differentiated

    def forward(x: Array, w: Array, mask: Array) -> tuple[Array, Any]:
        return (x @ w) * mask, (x, w, mask)

    def backward(dout: Array, cache: Any) -> tuple[Array, Array]:
        x, w, mask = cache
        return (dout * mask) @ w.T, x.T @ (dout * mask)

    assert check_layer(forward, backward, (x, w, mask), wrt=("x", "w")).passed
    with pytest.raises(
        UsageError, match=r"returned 2 items, but check_layer expected 3 gradients \(dx, dw, dmask\)"
    ):
        check_layer(forward, backward, (x, w, mask))


def test_a_tuple_with_none_for_the_constants_is_accepted() -> None:
    x, y = _n(5, 4), rng.integers(0, 4, size=5)

    def backward(dloss: Any, cache: Any) -> tuple[Array, None]:
        return softmax_loss_backward(dloss, cache), None

    assert check_layer(softmax_loss_forward, backward, (x, y)).passed


class StatefulRNN:
    """A layer object: carries its hidden state to the next call and accumulates gradients."""

    def __init__(self, Wx: Array, Wh: Array) -> None:
        self.Wx, self.Wh = Wx, Wh
        self.h = np.zeros((2, Wh.shape[0]))
        self.dWx = np.zeros_like(Wx)

    def forward(self, x: Array, Wx: Array) -> tuple[Array, Any]:
        prev = self.h
        self.h = np.tanh(x @ Wx + prev @ self.Wh)
        return self.h, (x, prev, Wx)

    def backward(self, dout: Array, cache: Any) -> tuple[Array, Array]:
        x, _prev, Wx = cache
        dz = dout * (1 - self.h**2)
        self.dWx += x.T @ dz  # accumulates
        return dz @ Wx.T, self.dWx


def test_stateful_layer_objects_need_reset_and_pass_with_it() -> None:
    x, Wx, Wh = _n(2, 3), _n(3, 4, scale=0.5), _n(4, 4, scale=0.5)
    layer = StatefulRNN(Wx, Wh)
    layer.h = _n(2, 4)
    h0 = layer.h.copy()
    report = check_layer(layer.forward, layer.backward, (x, Wx))
    assert not report.passed and "not deterministic" in report.message

    def reset() -> None:
        layer.h = h0.copy()
        layer.dWx[...] = 0.0

    layer.dWx[...] = 5.0  # gradients left over from an earlier step: reset clears them
    report = check_layer(layer.forward, layer.backward, (x, Wx), reset=reset)
    assert report.passed, str(report)


# ------------------------------------------------------------------------------------------------
# errors that say which convention was assumed
# ------------------------------------------------------------------------------------------------


def test_backward_returning_the_wrong_number_of_arrays() -> None:
    x, w, b = _n(4, 3), _n(3, 2), _n(2)
    with pytest.raises(
        UsageError,
        match=r"backward\(dout, cache\) returned 2 items, but check_layer expected 3 gradients \(dx, dw, db\), one "
        r"per floating-point input in order\. It assumed the \(out, cache\) convention, backward\(dout, cache\), "
        r"because forward returned a tuple of 2",
    ):
        check_layer(affine_forward, lambda d, c: affine_backward(d, c)[:2], (x, w, b))
    with pytest.raises(UsageError, match=r"returned None.*layer\.dW"):
        check_layer(affine_forward, lambda d, c: None, (x, w, b))
    with pytest.raises(UsageError, match=r"returned a dict with keys \['a', 'b'\]"):
        check_layer(affine_forward, lambda d, c: {"a": 1, "b": 2}, (x, w, b))


def test_forward_returning_something_unexpected() -> None:
    x = _n(3, 2)
    with pytest.raises(UsageError, match=r"forward returned None; check_layer expected \(out, cache\)"):
        check_layer(lambda x: None, lambda d, c: d, (x,))
    with pytest.raises(
        UsageError, match=r"forward's output out is a str.*assumed the \(out, cache\) convention"
    ):
        check_layer(lambda x: ("oops", x), lambda d, c: d, (x,))
    with pytest.raises(
        UsageError,
        match=r"with convention='cache' \(the \(out, cache\) convention.*forward must return a tuple",
    ):
        check_layer(lambda x: x * 2, lambda d, c: 2 * d, (x,), convention="cache")


def test_backward_that_cannot_take_the_assumed_arguments() -> None:
    x = _n(3, 2)

    def forward(x: Array) -> tuple[Array, Array]:  # two outputs, no cache: plain, not (out, cache)
        return x * 2, x * 3

    def backward(d1: Array, d2: Array, x: Array) -> Array:
        return 2 * d1 + 3 * d2

    with pytest.raises(
        UsageError, match=r"backward cannot be called as backward\(dout, cache\).*convention='plain'"
    ):
        check_layer(forward, backward, (x,))


def test_bad_arguments() -> None:
    x = _n(3, 2)
    with pytest.raises(TypeError, match="forward must be callable"):
        check_layer(None, relu_backward, (x,))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="convention='cs231n' is not one of"):
        check_layer(relu_forward, relu_backward, (x,), convention="cs231n")
    with pytest.raises(UsageError, match=r"names= must give one name per input \(1 inputs\)"):
        check_layer(relu_forward, relu_backward, (x,), names=("a", "b"))
    with pytest.raises(UsageError, match="wrt= names 'z', which is not an input"):
        check_layer(relu_forward, relu_backward, (x,), wrt=("z",))
    with pytest.raises(UsageError, match="none of the inputs is a floating-point array"):
        check_layer(relu_forward, relu_backward, (np.arange(3),))
    with pytest.raises(
        UsageError, match=r"upstream for out has shape \(2,\) but the output has shape \(3, 2\)"
    ):
        check_layer(relu_forward, relu_backward, (x,), upstream=np.ones(2))
    with pytest.raises(UsageError, match="forward returned 2 outputs, so upstream must be a tuple of 2"):
        check_layer(*CASES["lstm-step"][:2], CASES["lstm-step"][3], upstream=np.ones((N, H)))
