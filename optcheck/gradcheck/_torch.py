"""``check_torch``: torch autograd's gradients checked against optcheck's finite differences.

torch is imported inside :func:`check_torch` only, when it is called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

import numpy as np

from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._tree import describe
from ._api import _run, _validate
from ._report import GradientError, GradientReport
from ._space import Space

__all__ = ["check_torch"]


def _input_names(fn: Callable[..., Any], count: int, torch: Any) -> list[str]:
    """The parameter names of ``fn`` (of ``forward`` for a custom ``autograd.Function``'s ``apply``)."""
    owner = getattr(fn, "__self__", None)
    skip_ctx = False
    if inspect.isclass(owner) and issubclass(owner, torch.autograd.Function):
        fn = getattr(owner, "forward", fn)
        skip_ctx = True
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [f"input{i}" for i in range(count)]
    params = list(sig.parameters.values())
    if skip_ctx and params and params[0].name == "ctx":
        params = params[1:]
    names: list[str] = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            break
    if len(names) < count:
        return [f"input{i}" for i in range(count)]
    return names[:count]


def _outputs(out: Any, torch: Any) -> list[Any]:
    """The tensors ``fn`` returned: one tensor, or a tuple/list/dict of them (non-tensors left out)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        items = list(out.values())
    elif isinstance(out, (tuple, list)):
        items = list(out)
    else:
        raise UsageError(
            f"fn returned {describe(out)}; check_torch needs a tensor (a loss or a layer's output) or a "
            "tuple/list/dict of tensors"
        )
    tensors = [t for t in items if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())]
    if not tensors:
        raise UsageError(f"fn returned {describe(out)} with no floating-point tensor in it; nothing to check")
    return tensors


@overload
def check_torch(
    fn: Callable[..., Any],
    *inputs: Any,
    upstream: Any = ...,
    names: Sequence[str] | None = ...,
    raise_exception: None = ...,
    method: str = ...,
    mode: str = ...,
    samples: int | None = ...,
    directions: int | None = ...,
    rtol: float | None = ...,
    seed: int | np.random.Generator = ...,
    max_evaluations: int | None = ...,
    eps: float | None = ...,
    atol: float | None = ...,
) -> GradientReport: ...


@overload
def check_torch(
    fn: Callable[..., Any],
    *inputs: Any,
    upstream: Any = ...,
    names: Sequence[str] | None = ...,
    raise_exception: bool,
    method: str = ...,
    mode: str = ...,
    samples: int | None = ...,
    directions: int | None = ...,
    rtol: float | None = ...,
    seed: int | np.random.Generator = ...,
    max_evaluations: int | None = ...,
    eps: float | None = ...,
    atol: float | None = ...,
) -> bool: ...


def check_torch(
    fn: Callable[..., Any],
    *inputs: Any,
    upstream: Any = None,
    names: Sequence[str] | None = None,
    raise_exception: bool | None = None,
    method: str = "auto",
    mode: str = "auto",
    samples: int | None = None,
    directions: int | None = None,
    rtol: float | None = None,
    seed: int | np.random.Generator = 0,
    max_evaluations: int | None = None,
    eps: float | None = None,
    atol: float | None = None,
) -> GradientReport | bool:
    """Check torch autograd's gradients of ``fn`` against finite differences, in float32 too.

    ``check_torch(fn, x, w)`` runs ``fn(x, w)`` with autograd, takes the gradients with respect
    to the inputs that require grad (every floating-point tensor input when none does), and
    compares them with optcheck's numerical derivatives under the same error model as
    :func:`check_gradient`: the step and the tolerance follow the measured noise of ``fn``, so
    correct float32 code passes. When ``fn`` returns a tensor with more than one element (a
    layer), the check is on the vector-Jacobian product with an upstream gradient, as in
    :func:`check_vjp`. Every wrong input and entry is named, not only the first.

    ``fn`` may be a ``torch.nn.Module``: its parameters are checked too, named as in
    ``module.named_parameters()`` (``fc1.weight``), by calling it through
    ``torch.func.functional_call``. Put a module with dropout or batch statistics in the mode
    you want checked (``module.eval()``); a random ``fn`` is refused as not deterministic.

    Args:
        fn: a function of tensors (a custom ``torch.autograd.Function``'s ``apply`` included), or
            a ``torch.nn.Module``. It returns a tensor, or a tuple/list/dict of tensors.
        inputs: the arguments of ``fn``; as with ``torch.autograd.gradcheck``, a single tuple
            of them is accepted too. Tensors that require grad are checked (all floating-point
            tensors when none does); everything else is passed through unchanged. Never modified.
        upstream: for outputs with more than one element: the gradient with respect to each
            output (a tensor, or a tuple with one per output); by default standard normal draws
            from ``seed`` in the output's dtype. A one-element output gets ``1``.
        names: the inputs' names in the report; by default the parameter names of ``fn``
            (``x``, ``weight``) or ``input0``, ``input1``.
        raise_exception: ``None`` (the default) returns the report; ``True`` returns ``True``
            or raises :class:`GradientError` (an ``AssertionError``) whose message is the
            report, and ``False`` returns ``True``/``False``: the forms of
            ``torch.autograd.gradcheck``.
        method, mode, samples, directions, rtol, seed, max_evaluations: as for
            :func:`check_gradient`.
        eps, atol: accepted for ``torch.autograd.gradcheck`` compatibility and not used: the step
            and the tolerance come from the measured noise of ``fn`` (the report says so).

    Returns:
        A :class:`GradientReport` (entries named ``x[2, 1]``, ``fc1.weight[0, 3]``), or a bool
        with ``raise_exception``.

    Raises:
        UsageError: no floating-point tensor to check, ``fn`` returns no tensor, or
            ``upstream`` does not fit the outputs.
        GradientError: with ``raise_exception=True``, when the check fails.
    """
    import torch

    if not callable(fn):
        raise UsageTypeError(
            f"fn must be callable (a function of tensors or a torch.nn.Module); got {describe(fn)}"
        )
    if raise_exception is not None and not isinstance(raise_exception, bool):
        raise UsageTypeError(f"raise_exception must be True, False or None; got {raise_exception!r}")
    _validate(fn, method, mode, samples, directions, rtol, seed, max_evaluations)
    # accepted for torch.autograd.gradcheck's signature and not used, but never nonsense
    _v.check_float("eps", eps, low=0.0, low_open=True, optional=True)
    _v.check_float("atol", atol, low=0.0, optional=True)
    if names is not None:
        names = list(_v.check_str_seq("names", names))
    args = list(inputs)
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])  # gradcheck(fn, (x, w)) style
    module = fn if isinstance(fn, torch.nn.Module) else None
    target = module.forward if module is not None else fn
    if names is not None:
        if isinstance(names, str) or len(list(names)) != len(args):
            raise UsageError(f"names= must give one name per input ({len(args)} inputs); got {names!r}")
        arg_names = [str(n) for n in names]
    else:
        arg_names = _input_names(target, len(args), torch)
    tensors = {i: a for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
    for i, t in tensors.items():
        if t.requires_grad and not t.is_floating_point():
            raise UsageError(
                f"input {arg_names[i]} requires grad but has dtype {t.dtype}; expected floating point"
            )
    chosen = [i for i, t in tensors.items() if t.requires_grad]
    if not chosen and module is None:
        chosen = [i for i, t in tensors.items() if t.is_floating_point()]
    params: dict[str, Any] = {}
    if module is not None:
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if not chosen and not params:
        raise UsageError(
            "inputs: there is no floating-point tensor to check: pass tensors (torch.tensor(..., requires_grad=True)), "
            f"got {', '.join(describe(a) for a in args) or 'no inputs'}"
        )
    clash = set(params) & {arg_names[i] for i in chosen}
    if clash:
        raise UsageError(
            f"an input and a parameter of the module share the name {sorted(clash)[0]!r}; pass names="
        )
    x: dict[str, Any] = {arg_names[i]: args[i].detach() for i in chosen}
    x.update({n: p.detach() for n, p in params.items()})

    def call(values: Mapping[str, Any]) -> Any:
        call_args = [values[arg_names[i]] if i in chosen else a for i, a in enumerate(args)]
        if module is not None:
            return torch.func.functional_call(module, {n: values[n] for n in params}, tuple(call_args))
        return fn(*call_args)

    # autograd at the inputs as given
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    with torch.enable_grad():
        outs = _outputs(call(leaves), torch)
        ups = _upstreams(outs, upstream, seed, torch)
        total = sum((o * u).sum() for o, u in zip(outs, ups, strict=True))
        if not isinstance(total, torch.Tensor) or not total.requires_grad:
            grads_t: tuple[Any, ...] = tuple(None for _ in leaves)
        else:
            grads_t = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    grads = {
        k: (torch.zeros_like(v) if g is None else g.detach())
        for (k, v), g in zip(leaves.items(), grads_t, strict=True)
    }
    ups64 = [u.detach().to(torch.float64) if not u.is_complex() else u.detach() for u in ups]
    observed: set[str] = set()

    def phi(values: Any) -> Any:
        with torch.no_grad():
            outs_p = _outputs(call(values), torch)
            if len(outs_p) != len(ups64):
                raise UsageError("fn returned a different number of tensors at a perturbed point")
            acc: Any = 0.0
            for o, u in zip(outs_p, ups64, strict=True):
                observed.add(str(o.dtype).removeprefix("torch."))
                if tuple(o.shape) != tuple(u.shape):
                    raise UsageError(
                        f"fn's output has shape {tuple(o.shape)} at a perturbed point but {tuple(u.shape)} at the inputs"
                    )
                o64 = o.to(torch.complex128) if o.is_complex() else o.to(torch.float64)
                acc = acc + (o64 * u.to(o64.device)).sum().item()
        return acc

    notes = []
    if eps is not None or atol is not None:
        given = ", ".join(f"{k}={v!r}" for k, v in (("eps", eps), ("atol", atol)) if v is not None)
        notes.append(
            f"{given} (torch.autograd.gradcheck's fixed step/tolerance) not used: the step and the tolerance "
            "follow the measured noise of fn"
        )
    if any(o.numel() > 1 for o in outs):
        notes.append(
            "fn's output has several entries: checked the vector-Jacobian product with a random upstream"
        )
    space = Space(x, "inputs", bare=True)
    report = _run(
        phi,
        x,
        grads,
        "grads",
        method=method,
        mode=mode,
        samples=samples,
        directions=directions,
        rtol=rtol,
        seed=seed,
        max_evaluations=max_evaluations,
        observed=observed,
        notes=notes,
        space=space,
        grad_label=lambda key: f"the autograd gradient of {key}",
    )
    if raise_exception is None:
        return report
    if not report.passed and raise_exception:
        raise GradientError(report)
    return report.passed


def _upstreams(outs: list[Any], upstream: Any, seed: int | np.random.Generator, torch: Any) -> list[Any]:
    if upstream is None:
        rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
        made = []
        for o in outs:
            if o.numel() == 1:
                made.append(torch.ones_like(o))
            else:
                u = rng.standard_normal(tuple(o.shape))
                made.append(torch.as_tensor(u, device=o.device).to(o.dtype))
        return made
    given = [upstream] if len(outs) == 1 and isinstance(upstream, torch.Tensor) else upstream
    if not isinstance(given, (tuple, list)) or len(given) != len(outs):
        raise UsageError(
            f"fn returned {len(outs)} tensor(s), so upstream must be {'a tensor' if len(outs) == 1 else 'a tuple'} "
            f"with one per output; got {describe(upstream)}"
        )
    out = []
    for k, (o, u) in enumerate(zip(outs, given, strict=True)):
        t = torch.as_tensor(u, device=o.device)
        if tuple(t.shape) != tuple(o.shape):
            raise UsageError(
                f"upstream[{k}] has shape {tuple(t.shape)} but fn's output has shape {tuple(o.shape)}"
            )
        out.append(t.to(o.dtype))
    return out
