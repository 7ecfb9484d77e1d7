"""``check_layer``: a layer's forward and backward checked in one call, in the conventions people write.

Two conventions are understood:

* **(out, cache)**, as in cs231n and the deep-learning courses: ``forward(x, w, b, ...)`` returns
  ``(out, cache)`` (or ``(out1, out2, ..., cache)`` for a layer with several outputs, such as an
  LSTM step), and ``backward(dout, cache)`` (``backward(dout1, dout2, ..., cache)``) returns the
  gradients with respect to the floating-point inputs, in the inputs' order: ``(dx, dw, db)``;
* **plain**: ``forward(x, w, b, ...)`` returns the output (an array or a dict of arrays) and
  ``backward(dout, x, w, b, ...)`` takes the upstream gradient and the same inputs.

The check itself is :func:`~optcheck.gradcheck.check_vjp`'s: the gradients must be the
vector-Jacobian product ``upstream · ∂out/∂input``, checked as the gradient of
``Σ upstream · forward(inputs)``.
"""

from __future__ import annotations

import copy
import inspect
import keyword
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._core.names import describe_convention, match_grad_keys_with_convention
from .._tree import describe, flatten, zip_trees
from ._api import _keep, _run, _validate
from ._report import GradientReport
from ._space import Space, is_torch_tensor, to_numpy

__all__ = ["check_layer"]

CONVENTIONS = ("auto", "cache", "plain")
CACHE_TEXT = "the (out, cache) convention, backward(dout, cache)"
PLAIN_TEXT = "the plain convention, backward(dout, *inputs)"


def _is_float_array(value: object) -> bool:
    """Whether an input is differentiated by default: a floating-point numpy array or torch tensor."""
    if is_torch_tensor(value):
        return bool(value.is_floating_point())  # type: ignore[attr-defined]
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _is_array_like_output(value: object) -> bool:
    if is_torch_tensor(value):
        return True
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in "fciu"


def _param_names(fn: Callable[..., Any], count: int) -> list[str] | None:
    """The names of ``fn``'s first ``count`` positional parameters, or ``None`` when it does not say."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names: list[str] = []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            break
    if len(names) < count:
        return None
    return names[:count]


def _accepts_keywords(fn: Callable[..., Any], keys: Sequence[str]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return True
    return all(
        k in params and params[k].kind in (params[k].POSITIONAL_OR_KEYWORD, params[k].KEYWORD_ONLY)
        for k in keys
    )


def _binds(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """``None`` when ``fn(*args, **kwargs)`` matches ``fn``'s signature, else why not."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    except ValueError:  # no signature to read (a builtin): let the call itself tell
        return None
    return None


class _Layer:
    """The user's layer with its inputs split into those differentiated and the constants."""

    def __init__(
        self,
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        inputs: Any,
        names: Sequence[str] | None,
        wrt: Sequence[str] | None,
        convention: str,
        reset: Callable[[], Any] | None,
    ) -> None:
        self.forward, self.backward, self.reset = forward, backward, reset
        self.asked = convention
        if isinstance(inputs, Mapping):
            if names is not None:
                raise UsageError(
                    "names= names positional inputs; inputs is a dict, whose keys already name them "
                    f"({', '.join(map(str, inputs))})"
                )
            bad = [k for k in inputs if not isinstance(k, str)]
            if bad:
                raise UsageError(
                    f"inputs has a key {bad[0]!r} that is not a string; name the inputs by strings"
                )
            self.names = list(inputs)
            self.values = list(inputs.values())
            self.keywords = _accepts_keywords(forward, self.names)
        else:
            values = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
            if not values:
                raise UsageError("inputs is empty; pass the layer's inputs, e.g. (x, w, b)")
            self.values = values
            self.keywords = False
            if names is not None:
                if isinstance(names, str) or len(list(names)) != len(values):
                    raise UsageError(
                        f"names= must give one name per input ({len(values)} inputs); got {names!r}"
                    )
                self.names = [str(n) for n in names]
            else:
                found = _param_names(forward, len(values))
                self.names = found if found is not None else [f"input{i}" for i in range(len(values))]
        if len(set(self.names)) != len(self.names):
            raise UsageError(f"the inputs' names must differ; got {self.names}")
        if wrt is not None:
            wrt_list = [wrt] if isinstance(wrt, str) else list(wrt)
            unknown = [w for w in wrt_list if w not in self.names]
            if unknown:
                raise UsageError(
                    f"wrt= names {unknown[0]!r}, which is not an input; the inputs are {self.names}"
                )
            self.wrt = wrt_list
        else:
            self.wrt = [n for n, v in zip(self.names, self.values, strict=True) if _is_float_array(v)]
            if not self.wrt:
                kinds = ", ".join(f"{n}: {describe(v)}" for n, v in zip(self.names, self.values, strict=True))
                raise UsageError(
                    f"none of the inputs is a floating-point array, so there is nothing to differentiate ({kinds}); "
                    "pass float arrays, or name the inputs to check with wrt="
                )
        self.index = {n: i for i, n in enumerate(self.names)}
        self.convention = convention
        self.label = ""

    # -- calling the user's functions --------------------------------------------------------------
    def args(self, diff: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """The forward's arguments with the differentiated inputs taken from ``diff`` (fresh constants)."""
        vals = []
        for n, v in zip(self.names, self.values, strict=True):
            if n in diff:
                vals.append(diff[n])
            elif isinstance(v, (Mapping, list)):
                vals.append(copy.deepcopy(v))  # forward may update it (running statistics)
            else:
                vals.append(v)
        if self.keywords:
            return [], dict(zip(self.names, vals, strict=True))
        return vals, {}

    def call_forward(self, diff: Mapping[str, Any]) -> Any:
        args, kwargs = self.args(diff)
        if self.reset is not None:
            self.reset()
        return self.forward(*args, **kwargs)

    def split(self, result: Any) -> tuple[list[Any], Any]:
        """``(outputs, cache)`` from what forward returned, by the convention (chosen on first use)."""
        if self.convention == "auto":
            if isinstance(result, tuple) and len(result) >= 2:
                self.convention = "cache"
                self.label = (
                    f"{CACHE_TEXT}, because forward returned a tuple of {len(result)} whose last item was "
                    "taken as the cache (convention='plain' if it is not)"
                )
            elif isinstance(result, Mapping) or _is_array_like_output(result):
                self.convention = "plain"
                self.label = f"{PLAIN_TEXT}, because forward returned {describe(result)}"
            else:
                raise UsageError(
                    f"forward returned {_what(result)}; check_layer expected (out, cache) (the cs231n "
                    "convention), (out1, out2, ..., cache), an array or a dict of arrays"
                )
        elif not self.label:
            self.label = (CACHE_TEXT if self.convention == "cache" else PLAIN_TEXT) + ", as asked"
        if self.convention == "cache":
            if not isinstance(result, (tuple, list)) or len(result) < 2:
                raise UsageError(
                    f"forward returned {_what(result)}; with convention='cache' (the (out, cache) convention, "
                    "backward(dout, cache)) forward must return a tuple (out, cache) or (out1, out2, ..., cache)"
                )
            outputs, cache = list(result[:-1]), result[-1]
        else:
            outputs, cache = [result], None
        for k, out in enumerate(outputs):
            leaves = flatten(out) if isinstance(out, Mapping) else [((), out)]
            for path, leaf in leaves:
                if not _is_array_like_output(leaf):
                    where = _out_name(k, len(outputs)) + "".join(f"[{p!r}]" for p in path)
                    raise UsageError(
                        f"forward's output {where} is {_what(leaf)}; every output must be a numeric array "
                        f"(or a dict of them). check_layer assumed {self.label}."
                    )
        return outputs, cache


def _what(value: object) -> str:
    return "None" if value is None else describe(value)


def _out_name(k: int, n: int) -> str:
    return "out" if n == 1 else f"out{k + 1}"


def _as_float64(value: Any) -> Any:
    arr = to_numpy(value)
    return np.asarray(arr, dtype=np.complex128 if arr.dtype.kind == "c" else np.float64)


def _grad_label(key: str) -> str:
    head = key.split("[", 1)[0]
    if head.isidentifier() and not keyword.iskeyword(head):
        return "d" + key
    return f"the gradient of {key}"


def _check_layer_args(inputs: Any, upstream: Any, names: Any, wrt: Any) -> None:
    """Named errors for the arguments check_layer reads before calling the layer."""
    if names is not None:
        _v.check_str_seq("names", names)
    if wrt is not None and not isinstance(wrt, str):
        _v.check_str_seq("wrt", wrt)
    if inputs is None or isinstance(inputs, (str, bytes)):
        raise _v.UsageTypeError(
            f"inputs={inputs!r} is invalid; expected the layer's inputs: a tuple (x, w, b), an array or a dict"
        )
    items = (
        inputs.items()
        if isinstance(inputs, Mapping)
        else enumerate(inputs if isinstance(inputs, tuple) else (inputs,))
    )
    leaves: dict[str, Any] = {}
    for k, value in items:
        where = f"inputs[{k!r}]" if isinstance(inputs, (Mapping, tuple)) else "inputs"
        if isinstance(value, np.ndarray) and (type(value) is not np.ndarray or value.dtype.kind in "OUSVMm"):
            _v.check_array(where, value)  # np.matrix, masked arrays, object or string dtype
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            leaves[where] = value
    _v.check_same_namespace(leaves)
    if isinstance(upstream, np.ndarray) and type(upstream) is not np.ndarray:
        _v.check_array("upstream", upstream)
    if isinstance(upstream, (str, bytes)):
        raise _v.UsageTypeError(
            f"upstream={upstream!r} is invalid; expected an array shaped like the output (or None)"
        )


def check_layer(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    inputs: Any,
    *,
    upstream: Any = None,
    names: Sequence[str] | None = None,
    wrt: Sequence[str] | str | None = None,
    reset: Callable[[], Any] | None = None,
    convention: str = "auto",
    method: str = "auto",
    mode: str = "auto",
    samples: int | None = None,
    directions: int | None = None,
    rtol: float | None = None,
    seed: int | np.random.Generator = 0,
    max_evaluations: int | None = None,
    keep_dtype: bool | None = None,
) -> GradientReport:
    """Check a layer's backward against its forward in one call.

    ``check_layer(affine_forward, affine_backward, (x, w, b))`` runs ``forward(x, w, b)`` once,
    draws an upstream gradient ``dout`` shaped like the output, calls the backward, and checks
    every gradient it returns against finite differences of ``Σ dout · forward(x, w, b)``: the
    same check as :func:`check_vjp`, without the glue.

    Args:
        forward: the layer's forward. In the **(out, cache)** convention (cs231n and the
            courses) it returns ``(out, cache)``, or ``(out1, out2, ..., cache)`` for several
            outputs (an LSTM step's ``(next_h, next_c, cache)``). In the **plain** convention it
            returns the output: an array, a 0-d value or a dict of arrays.
        backward: ``backward(dout, cache)`` (``backward(dout1, dout2, ..., cache)``) in the
            (out, cache) convention, ``backward(dout, *inputs)`` in the plain one (``**inputs``
            when ``inputs`` is a dict passed by keyword). It returns the gradients with respect
            to the inputs being checked, in the inputs' order: a tuple ``(dx, dw, db)``, a
            single array for one input, or a dict keyed by the inputs' names (or by course names
            such as ``dx``, ``dw``). A tuple with one item per input, ``None`` for the others,
            is accepted too.
        inputs: the layer's inputs, as forward takes them: a tuple ``(x, w, b, conv_param)``,
            a single array, or a dict (passed by keyword when forward's parameters have those
            names, else positionally in the dict's order). Floating-point arrays are
            differentiated; anything else (integer labels, a ``conv_param`` or ``bn_param`` dict,
            Python numbers) is passed through unchanged (dicts and lists as fresh copies on
            every call, so a forward that updates running statistics does not change them).
            Never modified.
        upstream: the gradient of the loss with respect to the output(s), shaped like them: an
            array (a dict for a dict output), or a tuple with one per output. By default a
            standard normal draw (from ``seed``) in the output's dtype; a 0-d output (a loss
            layer) gets ``1.0``.
        names: the inputs' names for the report when they are positional; by default the
            names of forward's parameters (``x``, ``w``, ``b``).
        wrt: the inputs backward returns gradients for, when not every floating-point input
            (``wrt=("x", "w")``); in that order.
        reset: for layer objects that keep state between calls: a callable run before every
            call of forward (and before the forward/backward pair at the start) that puts the
            layer back as it was. Use it when forward changes something its next output depends
            on (a hidden state carried to the next call, a call counter, running statistics
            used in the output), or when backward accumulates into stored gradients
            (``self.dW += ...``). A layer that only records its inputs for backward
            (``self.x = x``) needs no reset: backward is called right after the forward at the
            original inputs, before any finite difference.
        convention: ``"cache"``, ``"plain"`` or ``"auto"`` (the default): the (out, cache)
            convention when forward returns a tuple of two or more items, the plain one when it
            returns an array or a dict.
        method, mode, samples, directions, rtol, seed, max_evaluations, keep_dtype: as for
            :func:`check_gradient`. float32 inputs are handed to forward in float32 (upstream in
            the output's dtype), so a float32 layer is checked in its own precision.

    Returns:
        A :class:`GradientReport`, its entries named by the inputs' names: ``w[2, 1]``.

    Raises:
        UsageError: forward returned something neither convention explains, backward returned
            the wrong number of arrays or the wrong shapes, or an argument is invalid; the
            message says which convention was assumed.

    Examples:
        >>> import numpy as np, optcheck
        >>> def affine_forward(x, w, b):
        ...     return x @ w + b, (x, w)
        >>> def affine_backward(dout, cache):
        ...     x, w = cache
        ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
        >>> rng = np.random.default_rng(0)
        >>> x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
        >>> optcheck.check_layer(affine_forward, affine_backward, (x, w, b)).passed
        True
    """
    if not callable(forward):
        raise UsageTypeError(f"forward must be callable; got {describe(forward)}")
    if not callable(backward):
        raise UsageTypeError(f"backward must be callable; got {describe(backward)}")
    if reset is not None and not callable(reset):
        raise UsageTypeError(f"reset must be a callable reset() (or None); got {describe(reset)}")
    if convention not in CONVENTIONS:
        raise UsageError(f"convention={convention!r} is not one of {', '.join(map(repr, CONVENTIONS))}")
    _validate(forward, method, mode, samples, directions, rtol, seed, max_evaluations)
    _check_layer_args(inputs, upstream, names, wrt)
    layer = _Layer(forward, backward, inputs, names, wrt, convention, reset)
    x = {n: layer.values[layer.index[n]] for n in layer.wrt}
    space = Space(x, "inputs", keep_dtype=_keep(keep_dtype), bare=True)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # forward and backward once, at the inputs as given (in their own dtype)
    first = layer.call_forward(space.user_x())
    outputs, cache = layer.split(first)
    ups_user, ups = _upstreams(outputs, upstream, rng, layer.label)
    if layer.convention == "cache":
        bargs: list[Any] = [*ups_user, cache]
        bkwargs: dict[str, Any] = {}
        shown = ", ".join([*(f"d{_out_name(k, len(outputs))}" for k in range(len(outputs))), "cache"])
    else:
        fargs, fkwargs = layer.args(space.user_x())
        bargs, bkwargs = [*ups_user, *fargs], fkwargs
        shown = ", ".join([*(f"d{_out_name(k, len(outputs))}" for k in range(len(outputs))), *layer.names])
    why = _binds(backward, bargs, bkwargs)
    if why is not None:
        raise UsageError(
            f"backward cannot be called as backward({shown}) ({why}). check_layer assumed {layer.label}."
        )
    grads_out = backward(*bargs, **bkwargs)
    grads, note = _gradients(grads_out, layer, shown)

    observed: set[str] = set()

    def phi(xt: Any) -> Any:
        outs, _ = layer.split(layer.call_forward(xt))
        if len(outs) != len(ups):
            raise UsageError(
                f"forward returned {len(outs)} output(s) at a perturbed point but {len(ups)} at the inputs; "
                "a layer must return the same structure on every call"
            )
        total: Any = 0.0
        for k, (y, u) in enumerate(zip(outs, ups, strict=True)):
            name = _out_name(k, len(outs))
            pairs = zip_trees({name: y, "upstream": u}) if isinstance(u, Mapping) else [((), (y, u))]
            for path, (yy, uu) in pairs:
                arr = to_numpy(yy)
                if arr.dtype.kind in "fc":
                    observed.add(arr.dtype.name)
                if tuple(arr.shape) != tuple(np.shape(uu)):
                    where = name + "".join(f"[{p!r}]" for p in path)
                    raise UsageError(
                        f"forward's output {where} has shape {tuple(arr.shape)} but its upstream gradient has "
                        f"shape {tuple(np.shape(uu))}; the upstream must have the shape of the output"
                    )
                total = total + np.sum(uu * arr)
        return complex(total) if np.iscomplexobj(total) else float(total)

    notes = [f"checked in {layer.label}"]
    if note:
        notes.append(note)
    return _run(
        phi,
        x,
        grads,
        "grads",
        method=method,
        mode=mode,
        samples=samples,
        directions=directions,
        rtol=rtol,
        seed=rng,
        max_evaluations=max_evaluations,
        observed=observed,
        notes=notes,
        space=space,
        grad_label=_grad_label,
    )


def _upstreams(
    outputs: list[Any], upstream: Any, rng: np.random.Generator, label: str
) -> tuple[list[Any], list[Any]]:
    """The upstream gradients as handed to backward (in the outputs' dtypes) and as float64 for the check."""
    n = len(outputs)
    if upstream is None:
        given: list[Any] = [None] * n
    elif n == 1:
        given = [upstream]
    else:
        if not isinstance(upstream, (tuple, list)) or len(upstream) != n:
            raise UsageError(
                f"forward returned {n} outputs, so upstream must be a tuple of {n} arrays (one per output, "
                f"in order); got {describe(upstream)}. check_layer assumed {label}."
            )
        given = list(upstream)
    user: list[Any] = []
    checks: list[Any] = []
    for k, (out, up) in enumerate(zip(outputs, given, strict=True)):
        name = _out_name(k, n)
        if isinstance(out, Mapping):
            if up is not None and not isinstance(up, Mapping):
                raise UsageError(
                    f"forward's output {name} is a dict, so its upstream must be a dict of the same keys"
                )
            pairs = (
                zip_trees({name: out, "upstream": up})
                if up is not None
                else [(p, (v, None)) for p, v in flatten(out)]
            )
            u_user, u_check = {}, {}
            leaves_user = []
            leaves_check = []
            for path, (o, u) in pairs:
                a, b = _one_upstream(o, u, rng, f"upstream for {name}" + "".join(f"[{p!r}]" for p in path))
                leaves_user.append((path, a))
                leaves_check.append((path, b))
            from .._tree import unflatten

            u_user = unflatten(out, [a for _, a in leaves_user])
            u_check = unflatten(out, [b for _, b in leaves_check])
            user.append(u_user)
            checks.append(u_check)
        else:
            a, b = _one_upstream(out, up, rng, f"upstream for {name}")
            user.append(a)
            checks.append(b)
    return user, checks


def _one_upstream(out: Any, up: Any, rng: np.random.Generator, where: str) -> tuple[Any, Any]:
    arr = to_numpy(out)
    shape = tuple(arr.shape)
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    if up is None:
        user: Any = np.ones(shape, dtype=dtype) if shape == () else rng.standard_normal(shape).astype(dtype)
        if shape == () and not isinstance(out, np.ndarray) and not is_torch_tensor(out):
            user = dtype.type(1.0)
    else:
        user = up
        u = to_numpy(up)
        if u.dtype.kind not in "fiu":
            raise UsageError(f"{where} has dtype {u.dtype}; expected a real floating-point array")
        if tuple(u.shape) != shape:
            raise UsageError(f"{where} has shape {tuple(u.shape)} but the output has shape {shape}")
    if is_torch_tensor(out) and not is_torch_tensor(user):
        import torch  # the layer returned tensors, so torch is loaded already

        user = torch.as_tensor(np.asarray(user), dtype=out.dtype, device=out.device)
    check = _as_float64(user)
    if not np.all(np.isfinite(check)):
        raise UsageError(f"{where} contains non-finite values; the upstream gradient must be finite")
    return user, check


def _gradients(result: Any, layer: _Layer, shown: str) -> tuple[dict[str, Any], str | None]:
    """backward's result as ``{input name: gradient}`` for the inputs in ``layer.wrt``."""
    wrt = layer.wrt
    expected = f"{len(wrt)} gradient{'s' if len(wrt) != 1 else ''} ({', '.join('d' + n for n in wrt)})"
    hint = "If backward skips some inputs, name those it differentiates with wrt=(...)."
    if result is None:
        raise UsageError(
            f"backward({shown}) returned None; check_layer expected {expected}. It assumed {layer.label}. "
            "For a layer object that stores its gradients (layer.dW), return them: "
            "backward=lambda dout, cache: (layer.backward(dout), layer.dW, layer.db)"
        )
    if isinstance(result, Mapping):
        keys = list(result)
        if set(keys) == set(wrt):
            return {n: result[n] for n in wrt}, None
        matched = match_grad_keys_with_convention(wrt, keys)
        if matched is not None:
            mapping, conv = matched
            return {n: result[mapping[n]] for n in wrt}, (
                f"backward's gradients are keyed by the {describe_convention(conv)} convention: "
                + ", ".join(f"{mapping[n]} for {n}" for n in wrt)
            )
        raise UsageError(
            f"backward({shown}) returned a dict with keys {keys}; check_layer expected {expected} keyed by "
            f"the inputs' names {wrt} or by one naming convention (dx for x). It assumed {layer.label}."
        )
    if isinstance(result, (tuple, list)):
        items = list(result)
        if len(items) == len(wrt):
            return dict(zip(wrt, items, strict=True)), None
        if len(items) == len(layer.names) and len(wrt) < len(layer.names):
            extra = [
                layer.names[i] for i, v in enumerate(items) if layer.names[i] not in wrt and v is not None
            ]
            if not extra:
                return {n: items[layer.index[n]] for n in wrt}, None
        raise UsageError(
            f"backward({shown}) returned {len(items)} item{'s' if len(items) != 1 else ''}, but check_layer "
            f"expected {expected}, one per floating-point input in order. It assumed {layer.label}. {hint}"
        )
    if len(wrt) == 1 and (_is_array_like_output(result)):
        return {wrt[0]: result}, None
    raise UsageError(
        f"backward({shown}) returned {describe(result)}; check_layer expected {expected}. "
        f"It assumed {layer.label}. {hint}"
    )
