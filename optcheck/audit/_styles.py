"""Calling a function target the way people write them (child side): any container, any return.

:class:`CallSession` serves every function style whose arguments :func:`~.adapters.bind`
gave roles to: the parameters and gradients as one dict (``parameters["W1"]``), one array
(``var``), a list or tuple of arrays, or one argument per array (``update(t, w, b, dw, db)``);
states made by the caller (zeros shaped like the parameters, passed back every call) or by
the target (``state=None`` first, then what it returned); the step number; a function
returning the gradient; hyperparameters anywhere in the signature. What the call returned is
read by meaning: ``None`` (updated in place), the new parameters, the step to apply (when the
target takes no parameters), or a tuple of those followed by the states in signature order.

The reading of the return value is a pure function of plain values (:func:`read_return`), so
that it can run in the parent once the child only executes the target.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._common import Plan, StepOutput
from .adapters import (
    BadReturn,
    TargetRaised,
    _changed,
    _describe_value,
    _flat_state,
    _Session,
    _to_numpy,
    call_target,
)

__all__ = ["CallSession", "read_return", "user_key"]

_LAYER_KEY = re.compile(r"^([A-Za-z_]*?)(\d+)$")


def user_key(key: str, base: int) -> str:
    """The target's name for the audit's key ``key`` (``W1`` -> ``W0`` when layers are numbered from 0)."""
    if base == 1:
        return key
    m = _LAYER_KEY.match(key)
    if m is None:
        return key
    return f"{m.group(1)}{int(m.group(2)) - 1 + base}"


def _is_arraylike(x: Any) -> bool:
    return (hasattr(x, "shape") and hasattr(x, "dtype")) or isinstance(x, (float, int, np.floating))


class CallSession(_Session):
    """One trajectory of a function target bound by :func:`~.adapters.bind` (see the module docstring)."""

    def __init__(self, obj: Any, plan: Plan, params0: Any) -> None:
        super().__init__(obj, plan, params0)
        self.keys: list[str] = list(params0) if isinstance(params0, Mapping) else []
        self.reset()

    # -- containers ------------------------------------------------------------------------------

    def _pack(self, tree: Any, prefix: str = "", zeros: bool = False) -> Any:
        """The audit's tree (dict keyed W1, ... or one array) in the target's container."""

        def leaf(a: Any) -> Any:
            return np.zeros_like(a) if zeros else np.array(a, copy=True)

        c = self.plan.container
        if not isinstance(tree, Mapping):
            return leaf(tree)
        base = self.plan.key_base
        if c == "dict" or c == "args":
            return {prefix + user_key(k, base): leaf(tree[k]) for k in self.keys}
        if c == "tuple":
            return tuple(leaf(tree[k]) for k in self.keys)
        return [leaf(tree[k]) for k in self.keys]

    def _unpack(self, value: Any, what: str, prefix: str = "") -> Any:
        """The target's container back as the audit's tree; ``BadReturn`` when it is not one."""
        if not self.keys:
            return _to_numpy(value, what)
        c = self.plan.container
        base = self.plan.key_base
        if c in ("dict", "args"):
            if not isinstance(value, Mapping):
                raise BadReturn(f"{what} is {_describe_value(value)}; expected a dict of arrays")
            out = {}
            for k in self.keys:
                uk = user_key(k, base)
                for cand in (prefix + uk, uk, "d" + uk):
                    if cand in value:
                        out[k] = _to_numpy(value[cand], f"{what}[{cand!r}]")
                        break
                else:
                    raise BadReturn(f"{what} has no key {prefix + uk!r} (keys: {list(value)[:8]})")
            return out
        if not isinstance(value, (list, tuple)) or len(value) != len(self.keys):
            raise BadReturn(f"{what} is {_describe_value(value)}; expected a {c} of {len(self.keys)} arrays")
        return {
            k: _to_numpy(v, f"{what}[{i}]") for i, (k, v) in enumerate(zip(self.keys, value, strict=True))
        }

    def _matches(self, value: Any) -> bool:
        """Whether ``value`` has the structure of the parameters (so a return value can be read as them)."""
        if not self.keys:
            return _is_arraylike(value) and np.shape(value) == np.shape(self.params0)
        c = self.plan.container
        if c in ("dict", "args"):
            return isinstance(value, Mapping) and all(
                user_key(k, self.plan.key_base) in value for k in self.keys
            )
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(self.keys)
            and all(
                _is_arraylike(v) and np.shape(v) == np.shape(self.params0[k])
                for v, k in zip(value, self.keys, strict=True)
            )
        )

    def _ostate_entries(self, state: Any) -> dict[str, Any]:
        """A target-made state as ``{name: tree or number}``: its entries shaped like the parameters."""
        out: dict[str, Any] = {}
        if self.keys and self._matches(state):  # one state keyed like the parameters
            try:
                return {"state": self._unpack(state, "state")}
            except BadReturn:
                return out
        flat = _flat_state(state)  # arrays and numbers, by key, position or field
        items: list[tuple[str, Any]] = []
        if isinstance(state, Mapping):
            items = [(str(k), v) for k, v in state.items()]
        elif isinstance(state, (list, tuple)) and not hasattr(state, "_asdict"):
            items = [(str(i), v) for i, v in enumerate(state)]
        for name, v in items:
            if name in flat and (not self.keys or isinstance(flat[name], float)):
                out[name] = flat[name]
                continue
            if self.keys and self._matches(v):
                try:
                    out[name] = self._unpack(v, name)
                except BadReturn:
                    continue
        if not items:
            out.update(flat)
        return out

    # -- the trajectory ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the first step: fresh copies of the parameters, zero states, no target-made state."""
        self.t = 0
        self.params: Any = self._pack(self.params0)
        sp = self.plan.state_prefix
        self.states: dict[str, Any] = {}
        self.ostates: dict[str, Any] = {}
        for c in self.plan.calls:
            if c.role == "state":
                self.states[c.state] = self._pack(self.params0, sp, zeros=True)
            elif c.role == "ostate":
                self.ostates[c.state] = None

    def _args(self, g: Any, grad_fn: Callable[..., Any]) -> tuple[list[Any], dict[str, Any]]:
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in self.plan.calls:
            if c.role in ("hyper", "arg"):
                v = c.value
            elif c.role == "params":
                v = self.params[c.state] if self.plan.container == "args" else self.params
            elif c.role == "grads":
                v = g[c.name] if self.plan.container == "args" else g
            elif c.role == "grad_fn":
                v = grad_fn
            elif c.role == "state":
                v = self.states[c.state]
            elif c.role == "ostate":
                v = self.ostates[c.state]
            elif c.role == "step":
                v = self.t
            elif c.role in ("callback", "config"):
                v = None
            elif c.role == "iters":
                v = 1
            else:  # pragma: no cover - bind gives no other roles to functions
                raise ValueError(f"unknown role {c.role!r}")
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        kw.update(self.plan.kwargs_hyper)
        return pos, kw

    def step(self, grads: Any) -> StepOutput:
        """One call of the target, read by meaning (see :func:`read_return`)."""
        self.t += 1
        plan = self.plan
        g = self._pack(grads, plan.grad_prefix if plan.container != "args" else "")
        if plan.container == "args":
            g = {gn: g[user_key(pk, plan.key_base)] for gn, pk in plan.arg_keys.items() if gn != pk}
        g_before = _copy(g)

        def grad_fn(*_args: Any, **_kwargs: Any) -> Any:
            return _copy(g)

        pos, kw = self._args(g, grad_fn)
        out = call_target(self.obj, *pos, **kw)
        state_calls = [c.state for c in plan.calls if c.role in ("state", "ostate")]
        read = read_return(out, self._matches, direction=not any(c.role == "params" for c in plan.calls))
        if read.params is not None:
            if read.direction:
                step_tree = self._unpack(read.params, "the returned step")
                if plan.direction == 0:
                    plan.direction = _direction_sign(step_tree, grads)
                sign = plan.direction or -1
                p_out = _apply(self._unpack(self.params, "the parameters"), step_tree, sign)
                self.params = self._pack(p_out)
            else:
                p_out = self._unpack(read.params, f"the returned {plan.param_names}")
                self.params = read.params
        else:
            if not any(c.role == "params" for c in plan.calls):
                raise BadReturn(
                    f"returned {_describe_value(out)}; a function that takes no parameters must return the step "
                    f"(an array shaped like {plan.grad_names}), possibly followed by its states"
                )
            p_out = self._unpack(self.params, f"{plan.param_names} after the call")
        for i, name in enumerate(state_calls):
            if i < len(read.rest):
                if name in self.states:
                    self.states[name] = read.rest[i]
                else:
                    self.ostates[name] = read.rest[i]
        s_out: dict[str, Any] = {}
        for name, value in self.states.items():
            try:
                s_out[name] = self._unpack(value, name, plan.state_prefix)
            except BadReturn:
                continue
        for value in self.ostates.values():
            s_out.update(self._ostate_entries(value))
        mutated = _mutated(plan.grad_names, g, g_before)
        returned = "none" if out is None else "params" if read.whole else f"tuple:{len(out)}"
        return StepOutput(p_out, s_out, mutated, returned=returned)


class _Read:
    def __init__(self, params: Any, rest: list[Any], direction: bool, whole: bool) -> None:
        self.params = params
        self.rest = rest
        self.direction = direction
        self.whole = whole


def read_return(out: Any, matches: Callable[[Any], bool], direction: bool = False) -> _Read:
    """What a call returned, by meaning: the parameters (or the step) and the states after them.

    ``None``: updated in place. A value with the structure of the parameters: the new parameters
    (the step when ``direction``). A tuple or list: its first such value, then the values after
    it, one per state argument in signature order (extra values such as corrected moments are
    ignored).
    """
    if out is None:
        return _Read(None, [], direction, False)
    if matches(out):
        return _Read(out, [], direction, True)
    if isinstance(out, (tuple, list)):
        for i, item in enumerate(out):
            if matches(item):
                return _Read(item, list(out[i + 1 :]), direction, False)
    raise BadReturn(
        f"returned {_describe_value(out)}; expected nothing (updated in place), the new parameters, or a tuple "
        "(parameters, *states)"
    )


def _direction_sign(step: Any, grads: Any) -> int:
    """+1 when the returned step is added (it points down the gradient), -1 when it is subtracted."""
    dot = 0.0
    s_leaves = step.values() if isinstance(step, Mapping) else [step]
    g_leaves = grads.values() if isinstance(grads, Mapping) else [grads]
    for s, g in zip(s_leaves, g_leaves, strict=False):
        a, b = np.asarray(s, dtype=np.float64), np.asarray(g, dtype=np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        dot += float(np.sum(a[ok] * b[ok]))
    if dot == 0.0:
        return 0
    return 1 if dot < 0 else -1


def _apply(params: Any, step: Any, sign: int) -> Any:
    if isinstance(params, Mapping):
        return {k: np.asarray(params[k]) + sign * np.asarray(step[k]) for k in params}
    return np.asarray(params) + sign * np.asarray(step)


def _copy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_copy(v) for v in x)
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def _mutated(name: str, now: Any, before: Any) -> list[str]:
    if isinstance(now, Mapping):
        return [f"{name}[{k!r}]" for k in now if _changed(np.asarray(now[k]), np.asarray(before[k]))][:1]
    if isinstance(now, (list, tuple)):
        return [f"{name}[{i}]" for i, (a, b) in enumerate(zip(now, before, strict=True)) if _changed(a, b)][
            :1
        ]
    return [name] if _changed(np.asarray(now), np.asarray(before)) else []


def first_call(
    obj: Any, plan: Plan, params0: Any, grads: Any, make: Callable[[Any, Plan, Any], _Session]
) -> tuple[_Session, StepOutput]:
    """The first step, trying the other key forms (``dW1``/``W1``, layers from 0) on a ``KeyError``."""
    keys = list(params0) if isinstance(params0, Mapping) else []
    forms: list[tuple[str, str, int]] = [(plan.grad_prefix, plan.state_prefix, plan.key_base)]
    if (keys and plan.container in ("dict", "args")) or plan.style == "object":
        for base in (1, 0):
            for gp, sp in (("d", "d"), ("", ""), ("d", ""), ("", "d")):
                if (gp, sp, base) not in forms:
                    forms.append((gp, sp, base))
    first_error: TargetRaised | None = None
    for gp, sp, base in forms:
        plan.grad_prefix, plan.state_prefix, plan.key_base = gp, sp, base
        session = make(obj, plan, params0)
        try:
            return session, session.step(grads)
        except TargetRaised as e:
            other = {p + user_key(k, b) for k in keys for p in ("", "d") for b in (0, 1)}
            if e.type_name != "KeyError" or e.key not in other:
                if first_error is None:
                    raise
                raise first_error from None
            first_error = first_error or e
    plan.grad_prefix, plan.state_prefix, plan.key_base = forms[0]
    assert first_error is not None
    raise first_error


def note_of(plan: Plan) -> str:
    """What the first call learnt about the plan, for the parent (``StepOutput.note``)."""
    return f"{plan.grad_prefix}|{plan.state_prefix}|{plan.key_base}|{plan.direction}"


def apply_note(plan: Plan, note: str) -> None:
    """Set on the parent's plan what :func:`note_of` reported."""
    parts = note.split("|")
    if len(parts) >= 2:
        plan.grad_prefix, plan.state_prefix = parts[0], parts[1]
    if len(parts) >= 4:
        plan.key_base, plan.direction = int(parts[2]), int(parts[3])


class _Layer:
    """The layer object handed to ``update(layer)``: one attribute per parameter and per gradient."""

    def __repr__(self) -> str:
        return f"Layer({', '.join(sorted(vars(self)))})"


class MethodSession(CallSession):
    """An optimizer object: constructed once per trajectory, its update method called every step.

    The method may take the parameters and gradients in any container (or one array per call,
    ``update(param, grad, name)`` once per key), a layer object with ``W``/``dW`` attributes, the
    step number, or a gradient function; ``plan.after`` (``step()``) is called after each update.
    """

    def __init__(self, obj: Any, plan: Plan, params0: Any) -> None:
        super().__init__(obj, plan, params0)
        from .adapters import owner_class

        cls = owner_class(obj) or obj
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in plan.calls:
            v = self.params if c.role == "params" else c.value
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        kw.update(plan.kwargs_hyper)
        self.opt = call_target(cls, *pos, **kw)
        self.layer: _Layer | None = None

    def _method_args(self, values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in self.plan.step_calls:
            if c.role in ("hyper", "arg"):
                v = c.value
            elif c.role == "params" and self.plan.container == "args":
                v = values["params"][c.state]
            elif c.role == "grads" and self.plan.container == "args":
                v = values["grads"][c.name]
            elif c.role == "callback":
                v = None
            else:
                v = values[c.role]
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        return pos, kw

    def step(self, grads: Any) -> StepOutput:
        """One update: the method (per key when it takes a key), then ``plan.after``."""
        self.t += 1
        plan = self.plan
        method = getattr(self.opt, plan.method)
        gp = plan.grad_prefix
        if plan.container == "attrs":
            if self.layer is None:
                self.layer = _Layer()
                for k in self.keys:
                    setattr(self.layer, k, np.array(self.params0[k], copy=True))
            g = {k: np.array(grads[k], copy=True) for k in self.keys}
            for k in self.keys:
                setattr(self.layer, (gp or "d") + k, g[k])
            g_before = _copy(g)
            pos, kw = self._method_args({"layer": self.layer, "step": self.t})
            call_target(method, *pos, **kw)
            p_out = {k: _to_numpy(getattr(self.layer, k), f"layer.{k}") for k in self.keys}
            mutated = [f"layer.d{k}" for k in self.keys if _changed(g[k], g_before[k])][:1]
        elif plan.per_key:
            g = {k: np.array(grads[k], copy=True) for k in self.keys}
            g_before = _copy(g)
            new = dict(self.params) if isinstance(self.params, Mapping) else {}
            for k in self.keys:
                values = {"params": new[k], "grads": g[k], "key": user_key(k, plan.key_base), "step": self.t}
                pos, kw = self._method_args(values)
                out = call_target(method, *pos, **kw)
                if out is not None:
                    new[k] = out[0] if isinstance(out, (tuple, list)) and out else out
            self.params = new
            p_out = self._unpack(self.params, f"{plan.param_names} after the update")
            mutated = _mutated(plan.grad_names, g, g_before)
        else:
            g = self._pack(grads, gp if plan.container != "args" else "")
            if plan.container == "args":
                g = {gn: g[user_key(pk, plan.key_base)] for gn, pk in plan.arg_keys.items() if gn != pk}
            g_before = _copy(g)

            def grad_fn(*_args: Any, **_kwargs: Any) -> Any:
                return _copy(g)

            values = {"params": self.params, "grads": g, "grad_fn": grad_fn, "step": self.t}
            pos, kw = self._method_args(values)
            out = call_target(method, *pos, **kw)
            has_params = any(c.role == "params" for c in plan.step_calls)
            read = read_return(out, self._matches) if out is not None else None
            if read is not None and read.params is not None:
                if plan.container == "args":
                    p_out = self._args_return(out)
                else:
                    p_out = self._unpack(read.params, f"the returned {plan.param_names}")
                    self.params = read.params
            elif out is not None and plan.container == "args":
                p_out = self._args_return(out)
            else:
                if not has_params and not plan.ctor_params:
                    raise BadReturn(
                        f"{plan.method} returned {_describe_value(out)}; expected the new parameters"
                    )
                p_out = self._unpack(self.params, f"{plan.param_names} after the update")
            mutated = _mutated(plan.grad_names, g, g_before)
        if plan.after:
            call_target(getattr(self.opt, plan.after))
        return StepOutput(p_out, self._opt_states(), mutated, returned="")

    def _args_return(self, out: Any) -> dict[str, Any]:
        """``return w, b`` of ``update(t, w, b, dw, db)``: one array per parameter argument, in order."""
        keys = [k for a, k in self.plan.arg_keys.items() if a == k]
        items = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(items) < len(keys):
            raise BadReturn(
                f"{self.plan.method} returned {_describe_value(out)}; expected ({', '.join(keys)})"
            )
        p_out = {k: _to_numpy(v, k) for k, v in zip(keys, items, strict=False)}
        self.params = dict(p_out)
        return p_out

    def _opt_states(self) -> dict[str, Any]:
        """The object's attributes shaped like the parameters (per key, per container or per array)."""
        out: dict[str, Any] = {}
        for name, val in getattr(self.opt, "__dict__", {}).items():
            if (
                self.keys
                and isinstance(val, Mapping)
                and all(user_key(k, self.plan.key_base) in val for k in self.keys)
            ):
                first = val[user_key(self.keys[0], self.plan.key_base)]
                if isinstance(first, (tuple, list)):  # cache[name] = (m, v): one state per position
                    for i in range(len(first)):
                        try:
                            tree = {
                                k: _to_numpy(val[user_key(k, self.plan.key_base)][i], name) for k in self.keys
                            }
                        except (BadReturn, IndexError, TypeError):
                            break
                        if all(tree[k].shape == np.shape(self.params0[k]) for k in self.keys):
                            out[f"{name}[{i}]"] = tree
                    continue
                try:
                    tree = {k: _to_numpy(val[user_key(k, self.plan.key_base)], name) for k in self.keys}
                except BadReturn:
                    continue
                if all(tree[k].shape == np.shape(self.params0[k]) for k in self.keys):
                    out[name] = tree
                continue
            if self.plan.container in ("attrs", "args") or self.plan.per_key:
                continue
            if self._matches(val):
                try:
                    out[name] = self._unpack(val, name)
                except BadReturn:
                    continue
        return out


class LoopSession(CallSession):
    """A loop driver, ``adam(grad, x0, callback=None, num_iters=100, ...)``, that runs every step itself.

    Step ``k`` of the audit runs the driver afresh with ``num_iters=k`` and a gradient function
    that returns the audit's gradients in turn (whatever it is called with; past the last one it
    keeps returning the last); the parameters after ``k`` steps are what the driver returns.
    """

    def reset(self) -> None:
        """Back to the first step."""
        super().reset()
        self.grads: list[Any] = []

    def step(self, grads: Any) -> StepOutput:
        """Run the driver over the gradients so far."""
        self.t += 1
        plan = self.plan
        self.grads.append(self._pack(grads, plan.grad_prefix))
        before = _copy(self.grads)
        calls = {"n": 0}

        def grad_fn(*_args: Any, **_kwargs: Any) -> Any:
            i = min(calls["n"], len(self.grads) - 1)
            calls["n"] += 1
            return _copy(self.grads[i])

        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in plan.calls:
            if c.role in ("hyper", "arg"):
                v = c.value
            elif c.role == "params":
                v = self._pack(self.params0)
            elif c.role == "grad_fn":
                v = grad_fn
            elif c.role == "iters":
                v = self.t
            else:
                v = None
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        kw.update(plan.kwargs_hyper)
        out = call_target(self.obj, *pos, **kw)
        read = read_return(out, self._matches)
        if read.params is None:
            raise BadReturn(f"returned {_describe_value(out)}; a loop driver returns the final parameters")
        p_out = self._unpack(read.params, "the returned parameters")
        if calls["n"] < self.t:
            raise BadReturn(
                f"called the gradient function {calls['n']} times in {self.t} iterations (num_iters={self.t})"
            )
        mutated = (
            ["the gradients"]
            if any(_mutated("g", a, b) for a, b in zip(self.grads, before, strict=True))
            else []
        )
        return StepOutput(p_out, {}, mutated, returned="params")


class TripleSession(CallSession):
    """A jax.example_libraries-style optimizer: ``init, update, get_params = momentum(step_size, mass)``.

    The factory is called with the hyperparameters; then ``state = init(x0)``, and every step
    ``state = update(i, g, state)`` (``i`` counts from 0; the update function's arguments are
    bound by name: step, gradients, state) and ``params = get_params(state)``.
    """

    def reset(self) -> None:
        """A fresh optimizer: the factory called again, ``init`` on the parameters."""
        super().reset()
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in self.plan.calls:
            if c.positional:
                pos.append(c.value)
            else:
                kw[c.name] = c.value
        out = call_target(self.obj, *pos, **kw)
        if not (isinstance(out, (tuple, list)) and len(out) >= 2 and all(callable(f) for f in out[:3])):
            raise BadReturn(
                f"returned {_describe_value(out)}; an optimizer factory returns (init, update, get_params)"
            )
        self.init, self.update = out[0], out[1]
        self.get_params = out[2] if len(out) >= 3 else None
        self.state = call_target(self.init, self._pack(self.params0))
        self.order = _update_order(self.update)

    def step(self, grads: Any) -> StepOutput:
        """``state = update(i, g, state)``; the parameters from ``get_params(state)``."""
        self.t += 1
        g = self._pack(grads, self.plan.grad_prefix)
        g_before = _copy(g)
        values = {"step": self.t - 1, "grads": g, "state": self.state}
        self.state = call_target(self.update, *[values[r] for r in self.order])
        params = call_target(self.get_params, self.state) if self.get_params is not None else self.state
        p_out = self._unpack(params, "get_params(state)")
        states = {
            k: v
            for k, v in self._ostate_entries(self.state).items()
            if isinstance(v, float) or not _same_tree(v, p_out)
        }
        return StepOutput(p_out, states, _mutated("g", g, g_before), returned="state")


def _same_tree(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return False


def _update_order(fn: Any) -> list[str]:
    """The roles of an update function's arguments: ``(i, g, state)`` by default, else by their names."""
    import inspect

    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        return ["step", "grads", "state"]
    roles = []
    for n in names:
        low = n.lower()
        if low in ("i", "t", "step", "count", "it", "iteration", "k"):
            roles.append("step")
        elif "state" in low:
            roles.append("state")
        elif low.startswith("g") or low.startswith("d"):
            roles.append("grads")
    if sorted(roles) == ["grads", "state", "step"]:
        return roles
    if sorted(roles) == ["grads", "state"]:
        return roles
    return ["step", "grads", "state"]
