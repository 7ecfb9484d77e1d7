"""The public entry points: :func:`check_gradient`, :func:`assert_gradient`, :func:`check_vjp`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._core.names import describe_convention, match_grad_keys_with_convention
from .._tree import Tree, describe, zip_trees
from ._engine import MIN_EVALUATIONS, Checker
from ._report import GradientError, GradientReport
from ._space import Space, is_torch_tensor, to_numpy

__all__ = ["assert_gradient", "check_gradient", "check_vjp"]

METHODS = ("auto", "central", "richardson", "complex-step")
MODES = ("auto", "full", "sample", "directional")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise UsageError(f"{name}={value!r} is not one of {valid}")
    return value


def _count(name: str, value: object, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageTypeError(f"{name} must be an int (or None); got {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise UsageError(f"{name}={value} must be at least {minimum}")
    return int(value)


def _validate(
    f: object,
    method: object,
    mode: object,
    samples: object,
    directions: object,
    rtol: object,
    seed: object,
    max_evaluations: object,
) -> tuple[str, str, int | None, int | None, float | None, int | np.random.Generator, int | None]:
    if not callable(f):
        raise UsageTypeError(f"f must be a callable f(x) -> float; got {f!r} ({type(f).__name__})")
    method_ = _choice("method", method, METHODS)
    mode_ = _choice("mode", mode, MODES)
    samples_ = _count("samples", samples, 1)
    directions_ = _count("directions", directions, 1)
    if samples_ is not None and mode_ not in ("auto", "sample"):
        raise UsageError(f"samples={samples_} only applies to mode='sample' (mode={mode_!r} was given)")
    if directions_ is not None and mode_ not in ("auto", "directional"):
        raise UsageError(
            f"directions={directions_} only applies to mode='directional' (mode={mode_!r} was given)"
        )
    if samples_ is not None and directions_ is not None:
        raise UsageError("give samples= (mode 'sample') or directions= (mode 'directional'), not both")
    rtol_: float | None = None
    if rtol is not None:
        if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real):
            raise UsageTypeError(
                f"rtol must be a float (or None for the error model's floor); got {rtol!r} ({type(rtol).__name__})"
            )
        rtol_ = float(rtol)
        if not (math.isfinite(rtol_) and rtol_ >= 0):
            raise UsageError(f"rtol={rtol!r} must be a finite number >= 0")
    # a whole number >= 0 (what np.random.default_rng takes) or a Generator; never numpy's own error
    seed_: int | np.random.Generator = _v.check_seed("seed", seed, generator=True)
    budget = _count("max_evaluations", max_evaluations, MIN_EVALUATIONS)
    return method_, mode_, samples_, directions_, rtol_, seed_, budget


def _match_course_keys(x: Tree, grad: Tree, grad_name: str) -> tuple[Tree, dict[str, str], str | None]:
    """``grad`` re-keyed like ``x`` when its keys are ``x``'s in a course convention (``dW1`` for ``W1``).

    Returns the (possibly re-keyed) gradient, the map ``{x key: grad key}`` (empty when nothing
    was re-keyed) and a note for the report.
    """
    if not (isinstance(x, Mapping) and isinstance(grad, Mapping)) or list(x) == list(grad):
        return grad, {}, None
    if set(x) == set(grad):
        return grad, {}, None
    matched = match_grad_keys_with_convention(list(x), list(grad), allow_extra=True)
    if matched is None:
        return grad, {}, None
    mapping, convention = matched
    pairs = ", ".join(f"{grad_name}[{g!r}] for x[{k!r}]" for k, g in list(mapping.items())[:4])
    more = ", ..." if len(mapping) > 4 else ""
    note = (
        f"{grad_name}'s keys name the parameters by the {describe_convention(convention)} convention: "
        f"checked {pairs}{more}"
    )
    unused = [k for k in grad if k not in set(mapping.values())]
    if unused:
        note += f"; {', '.join(map(repr, unused))} name no parameter and were left out"
    return {k: grad[g] for k, g in mapping.items()}, mapping, note


def _keep(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise UsageTypeError(
        f"keep_dtype must be True, False or None (float32/float16 x handed to f in its own dtype); got {value!r}"
    )


def _run(
    f: Callable[[Any], Any],
    x: Tree,
    grad: Tree | Callable[[Any], Tree],
    grad_name: str,
    *,
    method: str,
    mode: str,
    samples: int | None,
    directions: int | None,
    rtol: float | None,
    seed: int | np.random.Generator,
    max_evaluations: int | None,
    keep_dtype: bool | None = None,
    observed: set[str] | None = None,
    notes: list[str] | None = None,
    space: Space | None = None,
    grad_label: Callable[[str], str] | None = None,
) -> GradientReport:
    m, md, s, d, r, sd, b = _validate(f, method, mode, samples, directions, rtol, seed, max_evaluations)
    if space is None:
        space = Space(x, "x", keep_dtype=_keep(keep_dtype))
    if callable(grad) and not is_torch_tensor(grad):
        grad = grad(space.user_x())
    grad, mapping, note = _match_course_keys(space.structure, grad, grad_name)
    notes = list(notes or [])
    if note is not None:
        notes.append(note)
        if grad_label is None:

            def grad_label(key: str) -> str:
                for k, g in mapping.items():
                    if key.startswith(f"x[{k!r}]"):
                        return f"{grad_name}[{g!r}]" + key[len(f"x[{k!r}]") :]
                return key.replace("x", grad_name, 1)

    g, geps, grms = space.gradient(grad, grad_name)
    checker = Checker(
        f,
        space,
        g,
        geps,
        grms,
        method=m,
        mode=md,
        samples=s,
        directions=d,
        rtol=r,
        seed=sd,
        max_evaluations=b,
        observed=observed,
        notes=notes,
        grad_label=grad_label,
    )
    checker.grad_name = grad_name
    return checker.run()


def check_gradient(
    f: Callable[[Any], Any],
    x: Tree,
    grad: Tree | Callable[[Any], Tree],
    *,
    method: str = "auto",
    mode: str = "auto",
    samples: int | None = None,
    directions: int | None = None,
    rtol: float | None = None,
    seed: int | np.random.Generator = 0,
    max_evaluations: int | None = None,
    keep_dtype: bool | None = None,
) -> GradientReport:
    """Check an analytic gradient against numerical derivatives of ``f`` at ``x``.

    Args:
        f: the loss, ``f(x) -> float`` (a Python float, a numpy scalar, a 0-d or one-element
            array, or a one-element torch tensor). ``f`` is called with fresh copies laid out
            like ``x``: numpy arrays in float64 (complex128 for the complex step), or in their
            own dtype for float32/float16 entries of ``x`` (see ``keep_dtype``), and torch
            tensors in their own dtype and device.
        x: where to check: an array (any shape, 0-d included), a float, or a (nested) dict of
            arrays such as ``{"W1": ..., "b1": ..., "W2": ..., "b2": ...}``. Never modified.
        grad: the analytic gradient, laid out like ``x``, or a callable ``grad(x)`` returning it.
            Course keys are recognised: for ``x = {"W1": ..., "b1": ...}``, a ``grad`` keyed
            ``dW1``, ``db1`` (or ``grad_W1``, ``W1_grad``: one convention for every key) is
            matched to ``x``'s keys and the report says so. A gradient whose shape differs from
            its parameter's only by axes of size 1 (``(1, D)`` for ``(D,)``, ``()`` for
            ``(1, 1)``) is compared entry by entry, with a note; any other difference is an error.
        method: ``"central"`` (differences with ``h = eps^(1/3)·max(1, |x_i|)``, and a third,
            balanced step where the measured truncation is large), ``"richardson"`` (a table on
            central differences at ``h``, ``2h``, ``4h``, ``8h`` extrapolated to ``O(h^8)``,
            ``h = 2^k·eps^(1/7)·max(1, |x_i|)`` with ``k`` set per array by the measured
            truncation; about 8 evaluations per entry), ``"complex-step"``
            (``Im f(x + ih·e_i)/h``, exact to round-off when ``f`` accepts complex input), or
            ``"auto"``: the complex step when a probe shows ``f`` carries complex input correctly,
            else Richardson for a noisy (low-precision) ``f``, else central differences. ``eps``
            is the measured relative noise of ``f``.
        mode: ``"full"`` (every entry), ``"sample"`` (``samples`` random entries per array),
            ``"directional"`` (``directions`` random directions per array; failing arrays are
            then narrowed down to their bad entries by group testing) or ``"auto"``: full up to
            2,000 entries, else directional.
        samples: entries per array in mode ``"sample"`` (default 10); implies it under ``"auto"``.
        directions: random directions per array in mode ``"directional"`` (default 2); implies
            it under ``"auto"``.
        rtol: the relative floor of the verdict (default ``1e-8``): an entry fails when
            ``|analytic - numeric| > 10·predicted_error + rtol·max(|analytic|, |numeric|)``. Raise it
            to accept larger relative errors; the error-model term always stays, because a
            discrepancy the numerical derivative cannot resolve is no evidence of a bug.
        seed: seeds the random directions, samples and noise probe (an int or a numpy Generator).
        max_evaluations: the most calls of ``f`` to spend (at least 4); the report says what
            was covered when the budget ran out.
        keep_dtype: hand ``f`` the float32/float16 arrays of ``x`` in their own dtype (perturbed
            values rounded to it, the step measured after rounding), so that ``f`` computes in
            the precision its gradient was computed in. ``None`` (the default) and ``True`` do
            so; ``False`` hands ``f`` float64 copies. A warning says when float32 inputs give a
            float64 result (part of ``f`` runs in float64). Either way, the round-off allowed
            for each analytic entry is that of the precision it was computed in: the least
            precise of its own dtype, the dtype of ``x``, the dtype ``f`` returns and the
            precision the measured noise of ``f`` shows.

    Returns:
        A :class:`GradientReport`: ``report.passed``, ``report.failures``, ``print(report)``.

    Raises:
        TypeError: ``f`` is not callable, ``x`` has a non-floating leaf, ``f`` returns something
            that is not a number, or an argument has the wrong type.
        ValueError: ``f(x)`` is not a scalar or not finite, ``x`` is empty or not finite,
            ``grad`` does not have the keys and shapes of ``x``, or an option is invalid.

    Examples:
        >>> import numpy as np, optcheck
        >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
        >>> f = lambda x: 0.5 * x @ A @ x
        >>> optcheck.check_gradient(f, np.array([1.0, -1.0]), lambda x: A @ x).passed
        True
    """
    return _run(
        f,
        x,
        grad,
        "grad",
        method=method,
        mode=mode,
        samples=samples,
        directions=directions,
        rtol=rtol,
        seed=seed,
        max_evaluations=max_evaluations,
        keep_dtype=keep_dtype,
    )


def assert_gradient(
    f: Callable[[Any], Any],
    x: Tree,
    grad: Tree | Callable[[Any], Tree],
    *,
    method: str = "auto",
    mode: str = "auto",
    samples: int | None = None,
    directions: int | None = None,
    rtol: float | None = None,
    seed: int | np.random.Generator = 0,
    max_evaluations: int | None = None,
    keep_dtype: bool | None = None,
) -> GradientReport:
    """:func:`check_gradient`, raising :class:`GradientError` (an ``AssertionError``) when it fails.

    Returns the report when the check passes, so a test can look further at it. The error's
    message is ``str(report)``, and ``error.report`` holds the report.
    """
    report = check_gradient(
        f,
        x,
        grad,
        method=method,
        mode=mode,
        samples=samples,
        directions=directions,
        rtol=rtol,
        seed=seed,
        max_evaluations=max_evaluations,
        keep_dtype=keep_dtype,
    )
    if not report.passed:
        raise GradientError(report)
    return report


def _as_upstream(upstream: Tree) -> Tree:
    """``upstream`` with numpy float64 leaves (validated: real, finite)."""

    def convert(path_name: str, leaf: Any) -> Any:
        subclass = isinstance(leaf, np.ndarray) and type(leaf) is not np.ndarray
        if leaf is None or isinstance(leaf, (str, bytes)) or subclass:
            _v.check_array(path_name, leaf)  # None, strings, np.matrix, masked arrays: a named error
        arr = to_numpy(leaf)
        if arr.dtype.kind not in "fiu":
            raise UsageTypeError(f"{path_name} has dtype {arr.dtype}; expected a real floating-point array")
        out = np.asarray(arr, dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise UsageError(f"{path_name} contains non-finite values; the upstream gradient must be finite")
        return out

    if isinstance(upstream, Mapping):
        from .._tree import flatten, path_str, unflatten

        leaves = flatten(upstream, name="upstream")
        return unflatten(upstream, [convert(path_str("upstream", p), v) for p, v in leaves])
    return convert("upstream", upstream)


def check_vjp(
    f: Callable[[Any], Any],
    x: Tree,
    upstream: Tree,
    dx: Tree | Callable[[Any], Tree],
    *,
    method: str = "auto",
    mode: str = "auto",
    samples: int | None = None,
    directions: int | None = None,
    rtol: float | None = None,
    seed: int | np.random.Generator = 0,
    max_evaluations: int | None = None,
    keep_dtype: bool | None = None,
) -> GradientReport:
    """Check a layer's backward: ``dx`` must be the vector-Jacobian product ``upstream · ∂f/∂x``.

    ``f(x)`` is array-valued (a layer's forward: an array or a dict of arrays), ``upstream`` is
    the gradient of the loss with respect to that output (laid out like ``f(x)``), and ``dx``
    the analytic gradient with respect to ``x`` that your backward computes from it (laid out
    like ``x``, or a callable ``dx(x)``). The check is :func:`check_gradient` on the scalar
    ``φ(x) = Σ upstream · f(x)``, whose gradient is exactly that product; to check the
    gradients with respect to a layer's weights too, put them in ``x``
    (``x = {"A": A, "W": W, "b": b}``) and return them all from ``dx``. Options as for
    :func:`check_gradient`.
    """
    if not callable(f):
        raise UsageTypeError(
            f"f must be a callable f(x) -> array (the layer's forward); got {f!r} ({type(f).__name__})"
        )
    up = _as_upstream(upstream)
    observed: set[str] = set()

    def phi(xt: Any) -> Any:
        out = f(xt)
        pairs = (
            zip_trees({"f(x)": out, "upstream": up})
            if isinstance(out, Mapping) or isinstance(up, Mapping)
            else [((), (out, up))]
        )
        total: Any = 0.0
        for path, (y, u) in pairs:
            where = "f(x)" + "".join(f"[{k!r}]" for k in path)
            if isinstance(y, (str, bytes)) or y is None:
                raise UsageTypeError(f"{where} is {describe(y)}; check_vjp needs f to return arrays")
            yarr = to_numpy(y)
            if yarr.dtype.kind not in "fciu":
                raise UsageTypeError(
                    f"{where} has dtype {yarr.dtype}; check_vjp needs f to return numeric arrays"
                )
            if tuple(yarr.shape) != tuple(u.shape):
                up_where = "upstream" + where[4:]
                raise UsageError(
                    f"{where} has shape {tuple(yarr.shape)} but {up_where} has shape {tuple(u.shape)}; "
                    "upstream must have the shape of f's output"
                )
            if yarr.dtype.kind in "fc":
                observed.add(yarr.dtype.name)
            total = total + np.sum(u * yarr)
        # a Python number: the precision f computes in is the outputs' (recorded above)
        return complex(total) if np.iscomplexobj(total) else float(total)

    return _run(
        phi,
        x,
        dx,
        "dx",
        method=method,
        mode=mode,
        samples=samples,
        directions=directions,
        rtol=rtol,
        seed=seed,
        max_evaluations=max_evaluations,
        keep_dtype=keep_dtype,
        observed=observed,
    )
