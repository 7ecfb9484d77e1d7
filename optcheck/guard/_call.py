"""How :meth:`Guard.call` reads a call of the user's update function: which argument is what, what came back."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._core.arrays import is_array as _is_arraylike
from .._core.arrays import shape as _shape
from .._core.errors import UsageError, UsageTypeError
from .._core.tree import Tree
from ..rules import Rule, naming
from ._config import _detect_prefix


@dataclasses.dataclass
class _CallShape:
    """Which arguments of the user's update function are what."""

    params: str
    grads: str
    states: list[str]
    step: str | None


def _classify(arguments: Mapping[str, Any]) -> _CallShape:
    names = list(arguments)
    if len(names) < 2:
        raise UsageTypeError(
            "a guarded update function takes the parameters and the gradients as its first two arguments, "
            f"got {names}"
        )
    # by meaning first (the audit binds by the same names: optcheck.rules.naming.argument_roles),
    # by position when the names do not tell
    named = naming.argument_roles(names)
    p_named = [n for n in names if named.get(n) == "params"]
    g_named = [n for n in names if named.get(n) == "grads"]
    if len(p_named) == 1 and len(g_named) == 1:
        params_name, grads_name = p_named[0], g_named[0]
    else:
        params_name, grads_name = names[0], names[1]
    params = arguments[params_name]
    states: list[str] = []
    step: str | None = None
    for name in names:
        if name in (params_name, grads_name):
            continue
        value = arguments[name]
        if isinstance(params, Mapping) and isinstance(value, Mapping) and value:
            if _detect_prefix(params, value) or set(value) == set(params):
                states.append(name)
        elif _is_arraylike(params) and _is_arraylike(value) and _shape(value) == _shape(params):
            states.append(name)
        elif (
            naming.is_step_name(name) and isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        ):
            step = name
    return _CallShape(params_name, grads_name, states, step)


def _same_structure(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b)
    return _is_arraylike(a) and _is_arraylike(b) and _shape(a) == _shape(b)


def _split_result(result: Any, call: _CallShape, inputs: Mapping[str, Any]) -> tuple[Tree, dict[str, Tree]]:
    """The new params and state trees from what the function returned (or from its mutated inputs)."""
    params = inputs[call.params]
    states = {n: inputs[n] for n in call.states}
    if result is None:
        return params, states
    if isinstance(result, tuple):
        items = list(result)
        if len(items) == 1 + len(call.states):
            return items[0], dict(zip(call.states, items[1:], strict=True))
        if len(items) == len(call.states) + 2 and isinstance(items[-1], (int, np.integer)):
            return items[0], dict(zip(call.states, items[1:-1], strict=True))
        if len(items) > 1 + len(call.states) and _same_structure(items[0], params):
            # (params, *states, extras...): course Adam also returns v_corrected, s_corrected
            return items[0], dict(zip(call.states, items[1 : 1 + len(call.states)], strict=True))
        raise UsageError(
            f"the update function returned a tuple of {len(items)} items; expected ({call.params}, "
            f"{', '.join(call.states)}) in that order, or nothing when it updates its arguments in place"
        )
    return result, states


def _call_hyper(
    rule: Rule, arguments: Mapping[str, Any], call: _CallShape
) -> tuple[dict[str, Any], str | None]:
    """The hyperparameters the call passes (by any name of :mod:`optcheck.rules.naming`), and course L2.

    Returns ``({rule name: value}, note)``; a course L2 pair (``lambd``/``reg_param`` and the
    batch size ``m``) becomes ``weight_decay = λ/m``, which :meth:`Guard.call` applies to the
    weights only (``W1, W2, ...``), as the course's cost does; ``note`` says so.
    """
    taken = {call.params, call.grads, *call.states, call.step}
    numbers = {
        n: v
        for n, v in arguments.items()
        if n not in taken and isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    }
    meaning = naming.resolve_hypers(list(numbers), rule)
    own = set(naming.hyper_names(rule))
    reg: tuple[str, float] | None = None
    batch: tuple[str, float] | None = None
    given: dict[str, Any] = {}
    for name, value in numbers.items():
        if naming.is_course_l2(name, rule):
            reg = (name, float(value))
        elif name in naming.BATCH_NAMES and name not in own:
            batch = (name, float(value))
        elif meaning.get(name) is not None:
            given[name] = float(value) if isinstance(value, (float, np.floating)) else int(value)
    hyper = naming.normalise_hyper(rule, given, what="the call's ")
    note = None
    if reg is not None and reg[1] != 0 and "weight_decay" in own:
        wd = reg[1] / batch[1] if batch is not None and batch[1] > 0 else reg[1]
        hyper["weight_decay"] = wd
        formula = f"{reg[0]}/{batch[0]}" if batch is not None else reg[0]
        note = f"course L2: weight_decay = {formula} = {wd:.6g} on the weights W1, W2, ... (not the biases)"
    return hyper, note


def _bind(
    sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, defaults: bool = False
) -> dict[str, Any]:
    if sig is None:
        out = {f"args[{i}]": a for i, a in enumerate(args)}
        out.update(kwargs)
        return out
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise UsageTypeError(
            f"the guarded update function was called with arguments it does not accept: {e}"
        ) from None
    if defaults:
        bound.apply_defaults()
    out = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out.update({f"{name}[{i}]": v for i, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out
