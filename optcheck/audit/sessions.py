"""Calling the target the way a training loop would, driven from the parent ("sessions").

A session runs one trajectory of the target: created with the parameters, stepped with
gradients. Each step is ONE :class:`~optcheck.audit.targets.Batch` sent to the worker (the child
process, or the in-process executor): put the inputs, call the target, snapshot what it returned,
the inputs it must not change and the state it keeps. Everything read from the snapshots
(parameters, states, which inputs were changed in place) is decided here, in the parent, on
validated plain data; the child only executes.

Styles: ``dict`` (course), ``config`` (cs231n), ``functional``, ``object``, ``torch``. A new
style subclasses :class:`Session` and registers itself in :data:`SESSIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..rules import naming
from ._common import Call, Plan, StepOutput
from ._wire import TARGET, Closure, Obj, Opaque, Ref, Tensor
from .targets import Batch, BatchResult, TargetFailure

__all__ = [
    "SESSIONS",
    "BadReturn",
    "ConfigSession",
    "DictSession",
    "FunctionalSession",
    "ObjectSession",
    "Session",
    "TorchSession",
    "changed",
    "first_step_with_key_forms",
    "make_session",
    "probe_config",
    "to_numpy",
]


def BadReturn(message: str) -> TargetFailure:
    """The failure for a return value the session cannot read (a wrong type or structure)."""
    return TargetFailure("bad-return", message)


# ---------------------------------------------------------------------------------------------
# Reading snapshots (plain data from the child)
# ---------------------------------------------------------------------------------------------


def describe_value(x: Any) -> str:
    """``a tuple of 2 (ndarray, dict)`` / ``a float``: what a snapshot is, for messages."""
    if isinstance(x, tuple):
        return f"a tuple of {len(x)} ({', '.join(_type(v) for v in x[:4])})"
    return f"a {_type(x)}"


def _type(x: Any) -> str:
    if isinstance(x, Obj):
        return x.type.rsplit(".", 1)[-1]
    if isinstance(x, Opaque):
        name = x.type.rsplit(".", 1)[-1]
        return f"{name} ({x.note})" if x.note.startswith("dtype") else name
    return type(x).__name__


def to_numpy(x: Any, what: str) -> np.ndarray:
    """A numeric array from a snapshot value (array, number, list of numbers), else ``bad-return``."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, bool) or x is None or isinstance(x, (str, Obj, Opaque, Mapping)):
        raise BadReturn(f"{what} is {describe_value(x)}; expected a numeric array")
    if isinstance(x, (int, float)):
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        try:
            arr = np.asarray([to_numpy(v, what) for v in x])
        except (ValueError, TypeError):
            raise BadReturn(f"{what} is {describe_value(x)}; expected a numeric array") from None
        if arr.dtype.kind in "biuf":
            return arr
    raise BadReturn(f"{what} is {describe_value(x)}; expected a numeric array")


def numeric_scalar(v: Any) -> bool:
    """A number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def changed(a: Any, b: np.ndarray) -> bool:
    """Whether the snapshot ``a`` differs from ``b`` (shape, dtype, value or the sign of a zero)."""
    if not isinstance(a, np.ndarray):
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return True
    return not bool(np.array_equal(a, b, equal_nan=True)) or bool(np.any(np.signbit(a) != np.signbit(b)))


def read_dict(d: Any, keys: Sequence[str], prefix: str, what: str) -> dict[str, np.ndarray]:
    """``{key: array}`` from a snapshot of a dict keyed ``prefix + key``; ``bad-return`` otherwise."""
    if not isinstance(d, Mapping):
        raise BadReturn(f"{what} is {describe_value(d)}; expected a dict of arrays")
    out = {}
    for k in keys:
        if prefix + k not in d:
            raise BadReturn(f"{what} has no key {prefix + k!r} (keys: {[str(x) for x in list(d)[:8]]})")
        out[k] = to_numpy(d[prefix + k], f"{what}[{prefix + k!r}]")
    return out


def read_state_dict(d: Any, keys: Sequence[str], prefix: str) -> dict[str, Any] | None:
    """A state dict keyed like the parameters (``prefix + key``, ``key`` or ``"d" + key``), or ``None``."""
    if not isinstance(d, Mapping):
        return None
    out = {}
    for k in keys:
        for cand in (prefix + k, k, "d" + k):
            if cand in d:
                try:
                    out[k] = to_numpy(d[cand], cand)
                except TargetFailure:
                    return None
                break
        else:
            return None
    return out


def args_from(calls: Sequence[Call], values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword specs for a call, from the plan's calls and the role values."""
    pos: list[Any] = []
    kw: dict[str, Any] = {}
    for c in calls:
        if c.role in ("hyper", "arg"):
            v = c.value
        elif c.role == "state":
            v = values["state:" + c.state]
        else:
            v = values[c.role]
        if c.positional:
            pos.append(v)
        else:
            kw[c.name] = v
    return pos, kw


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


class Session:
    """One trajectory of the target: created with the parameters, stepped with gradients.

    ``worker`` is a :class:`~optcheck.audit.targets.ProcessWorker` or ``InProcessWorker``;
    ``step(grads)`` runs one call of the target (one batch) and returns a :class:`StepOutput`.
    Handles in the child are named by the session; the first step clears the child's table.
    """

    def __init__(self, worker: Any, plan: Plan, params0: Any) -> None:
        self.worker = worker
        self.plan = plan
        self.params0 = params0
        self.t = 0

    def batch(self) -> Batch:
        """A new batch; the first one of the session clears the child's handles."""
        b: Batch = self.worker.batch()
        if self.t == 0:
            b.clear()
        return b

    def run(self, b: Batch) -> BatchResult:
        """Send ``b``; a value the target cannot receive is a usage error."""
        return b.run(getattr(self.worker, "call_timeout", None))

    def step(self, grads: Any) -> StepOutput:  # pragma: no cover - abstract
        """One call of the target with ``grads``."""
        raise NotImplementedError


def _output(
    res: BatchResult, params: Any, states: dict[str, Any], mutated: list[str], returned: str = ""
) -> StepOutput:
    return StepOutput(
        params, states, mutated, printed=res.printed, printed_head=res.printed_head, returned=returned
    )


class DictSession(Session):
    """The course style: dicts of arrays, state dicts made by the caller, updated in place or returned."""

    def __init__(self, worker: Any, plan: Plan, params0: Mapping[str, np.ndarray]) -> None:
        super().__init__(worker, plan, params0)
        self.keys = list(params0)
        self.p_src: Any = None  # what "P" is at the next step (None: put params0)
        self.s_src: dict[str, Any] = {}

    def step(self, grads: Mapping[str, np.ndarray]) -> StepOutput:
        """One call, as ``parameters, v, s = update(parameters, grads, v, s, t, ...)``."""
        b = self.batch()
        first = self.t == 0
        self.t += 1
        gp, sp = self.plan.grad_prefix, self.plan.state_prefix
        names = self.plan.state_names
        if first:
            b.put({k: np.array(v, copy=True) for k, v in self.params0.items()}, name="P")
            for n in names:
                b.put({sp + k: np.zeros_like(v) for k, v in self.params0.items()}, name="S:" + n)
        else:
            if self.p_src is not None:
                b.put(self.p_src, name="P")
            for n, src in self.s_src.items():
                b.put(src, name="S:" + n)
        g = {gp + k: np.array(grads[k], copy=True) for k in self.keys}
        b.put(g, name="G")
        values: dict[str, Any] = {"params": Ref("P"), "grads": Ref("G"), "step": self.t}
        for n in names:
            values["state:" + n] = Ref("S:" + n)
        pos, kw = args_from(self.plan.calls, values)
        kw.update(self.plan.kwargs_hyper)
        out_ref = b.call(TARGET, pos, kw, name="OUT")
        i_out, i_p, i_g = b.snap(out_ref), b.snap(Ref("P")), b.snap(Ref("G"))
        i_s = {n: b.snap(Ref("S:" + n)) for n in names}
        res = self.run(b)
        out = res[i_out]
        params: Any = res[i_p]
        states = {n: res[i] for n, i in i_s.items()}
        self.p_src, self.s_src = None, {}
        pname = self.plan.param_names
        if out is None:
            pass
        elif isinstance(out, Mapping):
            params = out
            self.p_src = out_ref
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Mapping):
            params = out[0]
            self.p_src = out_ref.item(0)
            for i, n in enumerate(names):
                if len(out) > i + 1 and isinstance(out[i + 1], Mapping):
                    states[n] = out[i + 1]
                    self.s_src[n] = out_ref.item(i + 1)
        else:
            raise BadReturn(
                f"returned {describe_value(out)}; a dict-style update returns nothing (updating {pname} in "
                f"place), {pname}, or ({pname}, {', '.join(names) or 'states'})"
            )
        p_out = read_dict(params, self.keys, "", f"the returned {pname}")
        s_out: dict[str, Any] = {}
        for n in names:
            tree = read_state_dict(states[n], self.keys, sp)
            if tree is not None:
                s_out[n] = tree
        g_after = res[i_g]
        mutated = [
            f"{self.plan.grad_names}[{k!r}]"
            for k in g
            if not isinstance(g_after, Mapping) or changed(g_after.get(k), g[k])
        ]
        returned = "none" if out is None else "params" if isinstance(out, Mapping) else f"tuple:{len(out)}"
        return _output(res, p_out, s_out, mutated, returned)


class ConfigSession(Session):
    """The cs231n style: ``next_w, config = rule(w, dw, config)``, ``config`` carried between calls."""

    def __init__(self, worker: Any, plan: Plan, params0: np.ndarray) -> None:
        super().__init__(worker, plan, params0)
        self.w_src: Any = None
        self.c_src: Any = None
        self.config: Mapping[str, Any] | None = dict(plan.config) if plan.config else None

    def step(self, grads: np.ndarray) -> StepOutput:
        """One call: ``next_w, config = rule(w, dw, config)``."""
        b = self.batch()
        first = self.t == 0
        self.t += 1
        if first:
            b.put(np.array(self.params0, copy=True), name="W")
            b.put(dict(self.plan.config) if self.plan.config else None, name="C")
        else:
            if self.w_src is not None:
                b.put(self.w_src, name="W")
            if self.c_src is not None:
                b.put(self.c_src, name="C")
        dw = np.array(grads, copy=True)
        b.put(dw, name="G")
        values = {"params": Ref("W"), "grads": Ref("G"), "config": Ref("C"), "step": self.t}
        pos, kw = args_from(self.plan.calls, values)
        out_ref = b.call(TARGET, pos, kw, name="OUT")
        i_out, i_g, i_c = b.snap(out_ref), b.snap(Ref("G")), b.snap(Ref("C"))
        res = self.run(b)
        out = res[i_out]
        if isinstance(out, (tuple, list)) and len(out) >= 2 and isinstance(out[1], Mapping):
            w, config = out[0], out[1]
            self.w_src, self.c_src = out_ref.item(0), out_ref.item(1)
        elif isinstance(out, (tuple, list)) and len(out) == 2 and out[1] is None:
            raise BadReturn("returned (next_w, None); a config-style rule returns (next_w, config)")
        elif self.config is not None and not isinstance(out, (tuple, list, Mapping)) and out is not None:
            w, config = out, res[i_c] if isinstance(res[i_c], Mapping) else self.config
            self.w_src, self.c_src = out_ref, None
        else:
            raise BadReturn(f"returned {describe_value(out)}; a config-style rule returns (next_w, config)")
        p_out = to_numpy(w, "next_w")
        states: dict[str, Any] = {}
        for k, v in config.items():
            if isinstance(v, np.ndarray):
                states[str(k)] = v
            elif numeric_scalar(v):
                states[str(k)] = float(v)
        mutated = ["dw"] if changed(res[i_g], dw) else []
        self.config = config
        return _output(res, p_out, states, mutated)


class FunctionalSession(Session):
    """``param, state = step(param, grad, state, **hyper)`` with ``state=None`` on the first call."""

    def __init__(self, worker: Any, plan: Plan, params0: np.ndarray) -> None:
        super().__init__(worker, plan, params0)
        self.p_src: Any = None
        self.st_src: Any = None

    def step(self, grads: np.ndarray) -> StepOutput:
        """One call of the function."""
        b = self.batch()
        first = self.t == 0
        self.t += 1
        if first:
            b.put(np.array(self.params0, copy=True), name="P")
            b.put(None, name="ST")
        else:
            if self.p_src is not None:
                b.put(self.p_src, name="P")
            if self.st_src is not None:
                b.put(self.st_src, name="ST")
        g = np.array(grads, copy=True)
        b.put(g, name="G")
        values: dict[str, Any] = {"params": Ref("P"), "grads": Ref("G"), "step": self.t}
        for n in self.plan.state_names:
            values["state:" + n] = Ref("ST")
        pos, kw = args_from(self.plan.calls, values)
        kw.update(self.plan.kwargs_hyper)
        out_ref = b.call(TARGET, pos, kw, name="OUT")
        i_out, i_g = b.snap(out_ref), b.snap(Ref("G"))
        res = self.run(b)
        out = res[i_out]
        if isinstance(out, (tuple, list)) and len(out) == 2:
            p, state = out
            self.p_src, self.st_src = out_ref.item(0), out_ref.item(1)
        elif not isinstance(out, (tuple, list, Mapping)) and out is not None:
            p, state = out, self.last_state
            self.p_src, self.st_src = out_ref, None
        else:
            raise BadReturn(f"returned {describe_value(out)}; a functional step returns (param, state)")
        p_out = to_numpy(p, "the returned param")
        mutated = [self.plan.grad_names] if changed(res[i_g], g) else []
        self.last_state = state
        return _output(res, p_out, flat_state(state), mutated)

    last_state: Any = None


def flat_state(state: Any) -> dict[str, Any]:
    """A functional state as ``{name: array or number}`` (dict keys, tuple positions, attributes)."""
    out: dict[str, Any] = {}
    if state is None:
        return out
    if isinstance(state, Mapping):
        items = [(str(k), v) for k, v in state.items()]
    elif isinstance(state, Obj):
        items = list(state.attrs.items())
    elif isinstance(state, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(state)]
    else:
        items = [("state", state)]
    for k, v in items:
        if numeric_scalar(v):
            out[str(k)] = float(v)
            continue
        try:
            arr = to_numpy(v, str(k))
        except TargetFailure:
            continue
        out[str(k)] = arr if arr.shape != () else float(arr)
    return out


class ObjectSession(Session):
    """``opt = Cls(**hyper)``; ``opt.step(params, grads)`` mutates or returns the parameters."""

    def __init__(self, worker: Any, plan: Plan, params0: Mapping[str, np.ndarray]) -> None:
        super().__init__(worker, plan, params0)
        self.keys = list(params0)
        self.p_src: Any = None

    def step(self, grads: Mapping[str, np.ndarray]) -> StepOutput:
        """One call of ``opt.step`` (the object is constructed in the first step's batch)."""
        b = self.batch()
        first = self.t == 0
        self.t += 1
        if first:
            b.put({k: np.array(v, copy=True) for k, v in self.params0.items()}, name="P")
            pos, kw = args_from(self.plan.calls, {"params": Ref("P")})
            kw.update(self.plan.kwargs_hyper)
            b.call(TARGET, pos, kw, name="OPT")
        elif self.p_src is not None:
            b.put(self.p_src, name="P")
        gp = self.plan.grad_prefix
        g = {gp + k: np.array(grads[k], copy=True) for k in self.keys}
        b.put(g, name="G")
        pos, kw = args_from(self.plan.step_calls, {"params": Ref("P"), "grads": Ref("G"), "step": self.t})
        out_ref = b.call(Ref("OPT").attr("step"), pos, kw, name="OUT")
        i_out, i_p, i_g, i_opt = (
            b.snap(out_ref),
            b.snap(Ref("P")),
            b.snap(Ref("G")),
            b.snap(Ref("OPT"), depth=4),
        )
        res = self.run(b)
        out = res[i_out]
        params = res[i_p]
        self.p_src = None
        if isinstance(out, Mapping):
            params = out
            self.p_src = out_ref
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Mapping):
            params = out[0]
            self.p_src = out_ref.item(0)
        elif out is not None:
            raise BadReturn(
                f"step returned {describe_value(out)}; expected None (in place) or the parameters dict"
            )
        p_out = read_dict(params, self.keys, "", "the parameters after step")
        g_after = res[i_g]
        mutated = [
            f"{self.plan.grad_names}[{k!r}]"
            for k in g
            if not isinstance(g_after, Mapping) or changed(g_after.get(k), g[k])
        ]
        opt = res[i_opt]
        return _output(
            res, p_out, object_states(opt.attrs if isinstance(opt, Obj) else {}, self.keys), mutated
        )


def object_states(attrs: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The states an optimizer object keeps in its attributes, keyed like the parameters."""
    out: dict[str, Any] = {}
    for name, val in attrs.items():
        if isinstance(val, Mapping) and val:
            tree = read_state_dict(val, keys, "")
            if tree is not None:
                out[name] = tree
                continue
            # {"W1": {"m": ..., "v": ...}, ...}: one state per inner key
            inner = [val.get(k) for k in keys]
            if all(isinstance(x, Mapping) for x in inner):
                for ik in inner[0]:  # type: ignore[union-attr]
                    try:
                        out[f"{name}.{ik}"] = {k: to_numpy(val[k][ik], str(ik)) for k in keys}
                    except (TargetFailure, KeyError):
                        continue
        elif numeric_scalar(val) and naming.is_step_name(name):
            out[name] = float(val)
    return out


class TorchSession(Session):
    """A ``torch.optim.Optimizer`` subclass over float64 tensors: ``.grad`` set, ``.step()`` called."""

    def __init__(self, worker: Any, plan: Plan, params0: Mapping[str, np.ndarray]) -> None:
        super().__init__(worker, plan, params0)
        self.keys = list(params0)
        self.refs = {k: Ref(f"p{i}") for i, k in enumerate(self.keys)}

    def _needs_closure(self) -> bool:
        cache = self.worker.__dict__.setdefault("_torch_closure", {})
        if "step" not in cache:
            b = self.worker.batch()
            i = b.describe(Ref("OPT").attr("step"))
            desc = self.run(b)[i]
            params = desc.get("params", []) if isinstance(desc, Mapping) else []
            cache["step"] = any(
                isinstance(p, Mapping) and p.get("name") == "closure" and not p.get("has_default")
                for p in params
            )
        return bool(cache["step"])

    def step(self, grads: Mapping[str, np.ndarray]) -> StepOutput:
        """Set ``.grad`` and call ``opt.step()``."""
        first = self.t == 0
        if first:
            b = self.batch()
            for k, r in self.refs.items():
                b.put(Tensor(np.array(self.params0[k], copy=True), parameter=True), name=r.name)
            pos, kw = args_from(self.plan.calls, {"params": list(self.refs.values())})
            kw.update(self.plan.kwargs_hyper)
            b.call(TARGET, pos, kw, name="OPT")
            self.run(b)
            self.closure = self._needs_closure()
        self.t += 1
        b = self.worker.batch()
        given = {k: np.array(grads[k], copy=True) for k in self.keys}
        for k, r in self.refs.items():
            b.setattr(r, "grad", Tensor(given[k]))
        args = [Closure(Tensor(np.zeros((), dtype=np.float64)))] if self.closure else []
        b.call(Ref("OPT").attr("step"), args, name="OUT")
        i_p = {k: b.snap(r) for k, r in self.refs.items()}
        i_g = {k: b.snap(r.attr("grad")) for k, r in self.refs.items()}
        i_s = {k: b.snap(Ref("OPT").attr("state").item(r)) for k, r in self.refs.items()}
        res = self.run(b)
        p_out = {k: to_numpy(res[i], f"params[{k!r}]") for k, i in i_p.items()}
        mutated = [f"params[{k!r}].grad" for k, i in i_g.items() if changed(res[i], given[k])]
        per = [res[i_s[k]] if isinstance(res[i_s[k]], Mapping) else {} for k in self.keys]
        names = sorted({str(n) for s in per for n in s})
        states: dict[str, Any] = {}
        for name in names:
            vals = [s.get(name) for s in per]
            if all(isinstance(v, np.ndarray) and v.shape != () for v in vals):
                states[name] = dict(zip(self.keys, vals, strict=True))
            elif vals and (
                numeric_scalar(vals[0]) or (isinstance(vals[0], np.ndarray) and vals[0].shape == ())
            ):
                states[name] = float(vals[0])
        return _output(res, p_out, states, mutated)

    closure = False


SESSIONS: dict[str, type[Session]] = {
    "dict": DictSession,
    "config": ConfigSession,
    "functional": FunctionalSession,
    "object": ObjectSession,
    "torch": TorchSession,
}

_KEY_FORMS = naming.KEY_FORMS


def make_session(worker: Any, plan: Plan, params0: Any) -> Session:
    """Start a trajectory of the target in ``plan.style`` from ``params0``."""
    return SESSIONS[plan.style](worker, plan, params0)


def first_step_with_key_forms(
    worker: Any, plan: Plan, params0: Any, grads: Any
) -> tuple[Session, StepOutput]:
    """The first step, trying the other key forms (``dW1`` vs ``W1``) when the target raises
    ``KeyError`` on one. Sets ``plan.grad_prefix``/``plan.state_prefix`` to the forms that worked."""
    forms: list[tuple[str, str]] = [(plan.grad_prefix, plan.state_prefix)]
    if plan.style in ("dict", "object"):
        forms += [f for f in _KEY_FORMS if f not in forms]
    keys = list(params0) if isinstance(params0, Mapping) else []
    first_error: TargetFailure | None = None
    for gp, sp in forms:
        plan.grad_prefix, plan.state_prefix = gp, sp
        session = make_session(worker, plan, params0)
        try:
            return session, session.step(grads)
        except TargetFailure as e:
            other = {p + k for k in keys for p in ("", "d")}
            if e.id != "raised-exception" or e.type_name != "KeyError" or e.key not in other:
                if first_error is None:
                    raise
                raise first_error from None
            first_error = first_error or e
    plan.grad_prefix, plan.state_prefix = forms[0]
    assert first_error is not None
    raise first_error


def probe_config(worker: Any, plan: Plan, w: np.ndarray, dw: np.ndarray) -> dict[str, Any]:
    """Call a config-style rule with ``config=None`` and return the config it set up (arrays and literals)."""
    calls = [c for c in plan.calls if c.role in ("params", "grads", "config", "arg")]
    pos, kw = args_from(calls, {"params": w.copy(), "grads": dw.copy(), "config": None})
    b = worker.batch()
    b.clear()
    i = b.snap(b.call(TARGET, pos, kw, name="OUT"))
    out = b.run(getattr(worker, "call_timeout", None))[i]
    if not (isinstance(out, (tuple, list)) and len(out) >= 2 and isinstance(out[1], Mapping)):
        raise BadReturn(
            f"returned {describe_value(out)} for config=None; a config-style rule returns (next_w, config)"
        )
    config: dict[str, Any] = {}
    for k, v in out[1].items():
        if isinstance(v, np.ndarray) or _literal(v):
            config[str(k)] = v
    return config


def _literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, tuple):
        return all(_literal(v) for v in value)
    return False
