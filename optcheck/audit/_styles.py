"""Calling targets the way people write them, bound by meaning (parent-side sessions).

:func:`~.adapters.bind` gives every argument of a target a role; the sessions here call it
accordingly, one :class:`~optcheck.audit.targets.Batch` per step, and read what it did from the
child's plain snapshots (the child only executes):

* :class:`CallSession`, for functions: the parameters and gradients as one dict
  (``parameters["W1"]``), one array (``var``), a list or tuple of arrays, or one argument per
  array (``update(t, w, b, dw, db)``); states made by the caller (zeros shaped like the
  parameters, passed back every call) or by the target (``state=None`` first, then what it
  returned); the step number; a function returning the gradient; hyperparameters anywhere.
  What a call returns is read by meaning (:func:`read_return`): nothing (updated in place), the
  new parameters, the step to apply (a target that takes no parameters), or a tuple of those
  followed by the states in signature order.
* :class:`MethodSession`, for optimizer objects: constructed once (``Class.method`` targets
  included), their update method called every step (``update``, ``update_params``,
  ``apply_grad``, ...; once per key for ``update(param, grad, name)``; with a layer object for
  ``update(layer)``), then ``step()`` when the update method is another one.
* :class:`LoopSession`, for loop drivers (``adam(grad, x0, num_iters=...)``), and
  :class:`TripleSession`, for jax-style ``(init, update, get_params)`` factories.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._common import Plan, StepOutput
from ._wire import TARGET, GradFn, Obj, Recorder, Ref
from .sessions import SESSIONS, BadReturn, Session, changed, describe_value, flat_state, to_numpy
from .targets import Batch, BatchResult, TargetFailure

__all__ = [
    "CallSession",
    "LoopSession",
    "MethodSession",
    "TripleSession",
    "first_call",
    "read_return",
    "user_key",
]

_LAYER_KEY = re.compile(r"^([A-Za-z_]*?)(\d+)$")

#: The styles served here (registered in :data:`optcheck.audit.sessions.SESSIONS`).
STYLES = ("dict", "functional", "object", "loop", "triple")


def user_key(key: str, base: int) -> str:
    """The target's name for the audit's key ``key`` (``W1`` -> ``W0`` when layers are numbered from 0)."""
    if base == 1:
        return key
    m = _LAYER_KEY.match(key)
    if m is None:
        return key
    return f"{m.group(1)}{int(m.group(2)) - 1 + base}"


def _is_arraylike(x: Any) -> bool:
    return isinstance(x, (np.ndarray, float, int)) and not isinstance(x, bool)


def _output(
    res: BatchResult, params: Any, states: dict[str, Any], mutated: list[str], returned: str = ""
) -> StepOutput:
    return StepOutput(
        params, states, mutated, printed=res.printed, printed_head=res.printed_head, returned=returned
    )


class _Read:
    def __init__(self, params: Any, index: int | None, rest: list[Any], whole: bool) -> None:
        self.params = params
        self.index = index  # position of the parameters in a returned tuple (None: the whole value)
        self.rest = rest
        self.whole = whole


def read_return(out: Any, matches: Callable[[Any], bool]) -> _Read:
    """What a call returned, by meaning: the parameters (or the step) and the states after them.

    ``None``: updated in place. A value with the structure of the parameters: the new parameters
    (the step when the target takes no parameters). A tuple or list: its first such value, then
    the values after it, one per state argument in signature order (extra values such as
    corrected moments are ignored).
    """
    if out is None:
        return _Read(None, None, [], False)
    if matches(out):
        return _Read(out, None, [], True)
    if isinstance(out, (tuple, list)):
        for i, item in enumerate(out):
            if matches(item):
                return _Read(item, i, list(out[i + 1 :]), False)
    raise BadReturn(
        f"returned {describe_value(out)}; expected nothing (updated in place), the new parameters, or a tuple "
        "(parameters, *states)"
    )


class CallSession(Session):
    """One trajectory of a function target bound by :func:`~.adapters.bind` (see the module docstring)."""

    def __init__(self, worker: Any, plan: Plan, params0: Any) -> None:
        super().__init__(worker, plan, params0)
        self.keys: list[str] = list(params0) if isinstance(params0, Mapping) else []
        self.p_src: Any = None  # what the parameters handle holds next step (None: as left in place)
        self.s_src: dict[str, Any] = {}
        self.p_now: Any = params0  # the parameters after the last step, as the audit's tree

    # -- containers ------------------------------------------------------------------------------

    def pack(self, tree: Any, prefix: str = "", zeros: bool = False) -> Any:
        """The audit's tree (dict keyed W1, ... or one array) in the target's container (plain data)."""

        def leaf(a: Any) -> Any:
            return np.zeros_like(a) if zeros else np.array(a, copy=True)

        if not isinstance(tree, Mapping):
            return leaf(tree)
        c, base = self.plan.container, self.plan.key_base
        if c in ("dict", "args", "attrs"):
            return {prefix + user_key(k, base): leaf(tree[k]) for k in self.keys}
        if c == "tuple":
            return tuple(leaf(tree[k]) for k in self.keys)
        return [leaf(tree[k]) for k in self.keys]

    def unpack(self, value: Any, what: str, prefix: str = "") -> Any:
        """A snapshot of the target's container as the audit's tree; ``bad-return`` when it is not one."""
        if not self.keys:
            return to_numpy(value, what)
        c, base = self.plan.container, self.plan.key_base
        if c in ("dict", "args", "attrs"):
            if not isinstance(value, Mapping):
                raise BadReturn(f"{what} is {describe_value(value)}; expected a dict of arrays")
            out = {}
            for k in self.keys:
                uk = user_key(k, base)
                for cand in (prefix + uk, uk, "d" + uk):
                    if cand in value:
                        out[k] = to_numpy(value[cand], f"{what}[{cand!r}]")
                        break
                else:
                    raise BadReturn(
                        f"{what} has no key {prefix + uk!r} (keys: {[str(x) for x in list(value)[:8]]})"
                    )
            return out
        if not isinstance(value, (list, tuple)) or len(value) != len(self.keys):
            raise BadReturn(f"{what} is {describe_value(value)}; expected a {c} of {len(self.keys)} arrays")
        return {k: to_numpy(v, f"{what}[{i}]") for i, (k, v) in enumerate(zip(self.keys, value, strict=True))}

    def matches(self, value: Any) -> bool:
        """Whether a snapshot has the structure of the parameters (so it can be read as them)."""
        if not self.keys:
            return _is_arraylike(value) and np.shape(value) == np.shape(self.params0)
        c = self.plan.container
        if c in ("dict", "args", "attrs"):
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

    def state_entries(self, state: Any) -> dict[str, Any]:
        """A target-made state (snapshot) as ``{name: tree or number}``: its entries shaped like the parameters."""
        out: dict[str, Any] = {}
        if self.keys and self.matches(state):  # one state keyed like the parameters
            try:
                return {"state": self.unpack(state, "state")}
            except TargetFailure:
                return out
        flat = flat_state(state)
        items: list[tuple[str, Any]] = []
        if isinstance(state, Mapping):
            items = [(str(k), v) for k, v in state.items()]
        elif isinstance(state, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(state)]
        elif isinstance(state, Obj):
            items = (
                list(state.attrs.items())
                if state.items is None
                else [(str(i), v) for i, v in enumerate(state.items)]
            )
        for name, v in items:
            if name in flat and (not self.keys or isinstance(flat[name], float)):
                out[name] = flat[name]
            elif self.keys and self.matches(v):
                try:
                    out[name] = self.unpack(v, name)
                except TargetFailure:
                    continue
        if not items:
            out.update(flat)
        return out

    # -- one step --------------------------------------------------------------------------------

    def _grads(self, b: Batch, grads: Any) -> tuple[Any, dict[str, Any]]:
        """Put the gradients; returns (what was put, role values for them)."""
        plan = self.plan
        if plan.container == "args":
            g = self.pack(grads)
            put = {gn: g[user_key(pk, plan.key_base)] for gn, pk in plan.arg_keys.items() if gn != pk}
            for gn, arr in put.items():
                b.put(arr, name="G:" + gn)
            return put, {"grads": {gn: Ref("G:" + gn) for gn in put}}
        g = self.pack(grads, plan.grad_prefix)
        b.put(g, name="G")
        b.put(GradFn([g, g]), name="GF")
        return g, {"grads": Ref("G"), "grad_fn": Ref("GF")}

    def _snap_grads(self, b: Batch, put: Any) -> Any:
        if self.plan.container == "args":
            return {gn: b.snap(Ref("G:" + gn)) for gn in put}
        return b.snap(Ref("G"))

    def _mutated(self, res: BatchResult, put: Any, snap: Any) -> list[str]:
        name = self.plan.grad_names
        if isinstance(snap, Mapping):
            return [gn for gn, i in snap.items() if changed(res[i], put[gn])][:1]
        after = res[snap]
        if isinstance(put, Mapping):
            if not isinstance(after, Mapping):
                return [name]
            return [f"{name}[{k!r}]" for k in put if changed(after.get(k), put[k])][:1]
        if isinstance(put, (list, tuple)):
            if not isinstance(after, (list, tuple)) or len(after) != len(put):
                return [name]
            return [f"{name}[{i}]" for i, (a, p) in enumerate(zip(after, put, strict=True)) if changed(a, p)][
                :1
            ]
        return [name] if changed(after, put) else []

    def _args(self, values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in self.plan.calls:
            if c.role in ("hyper", "arg"):
                v = c.value
            elif c.role == "params":
                v = Ref("P:" + c.state) if self.plan.container == "args" else Ref("P")
            elif c.role == "grads":
                v = values["grads"][c.name] if self.plan.container == "args" else values["grads"]
            elif c.role in ("state", "ostate"):
                v = Ref("S:" + c.state)
            elif c.role == "step":
                v = self.t
            elif c.role == "iters":
                v = 1
            elif c.role == "grad_fn":
                v = values.get("grad_fn")
            else:  # callback, config, ignore
                v = None
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        kw.update(self.plan.kwargs_hyper)
        return pos, kw

    def step(self, grads: Any) -> StepOutput:
        """One call of the target, read by meaning."""
        plan = self.plan
        b = self.batch()
        first = self.t == 0
        self.t += 1
        has_params = any(c.role == "params" for c in plan.calls)
        states = [c for c in plan.calls if c.role in ("state", "ostate")]
        if first or self.p_src is not None:
            src = self.pack(self.params0) if first else self.p_src
            if plan.container == "args":
                for k in self.keys:
                    b.put(
                        src[user_key(k, plan.key_base)] if first else src[k],
                        name="P:" + user_key(k, plan.key_base),
                    )
            else:
                b.put(src, name="P")
        for c in states:
            if first:
                init = None if c.role == "ostate" else self.pack(self.params0, plan.state_prefix, zeros=True)
                b.put(init, name="S:" + c.state)
            elif self.s_src.get(c.state) is not None:
                b.put(self.s_src[c.state], name="S:" + c.state)
        put, gvals = self._grads(b, grads)
        pos, kw = self._args(gvals)
        out_ref = b.call(TARGET, pos, kw, name="OUT")
        i_out = b.snap(out_ref)
        if plan.container == "args":
            i_p: Any = {k: b.snap(Ref("P:" + user_key(k, plan.key_base))) for k in self.keys}
        else:
            i_p = b.snap(Ref("P"))
        i_s = {c.state: b.snap(Ref("S:" + c.state)) for c in states}
        i_g = self._snap_grads(b, put)
        res = self.run(b)
        out = res[i_out]
        self.p_src, self.s_src = None, {}
        read = read_return(out, self.matches)
        if read.params is not None:
            ref = out_ref if read.index is None else out_ref.item(read.index)
            if not has_params:  # the step to apply: the parameters are the caller's
                step_tree = self.unpack(read.params, "the returned step")
                if plan.direction == 0:
                    plan.direction = _direction_sign(step_tree, grads)
                p_out = _apply(self.p_now, step_tree, plan.direction or -1)
            else:
                p_out = self.unpack(read.params, f"the returned {plan.param_names}")
                self.p_src = ref
        elif not has_params:
            raise BadReturn(
                f"returned {describe_value(out)}; a function that takes no parameters must return the step "
                f"(shaped like {plan.grad_names}), possibly followed by its states"
            )
        elif plan.container == "args":
            p_out = {k: to_numpy(res[i], f"{k} after the call") for k, i in i_p.items()}
        else:
            p_out = self.unpack(res[i_p], f"{plan.param_names} after the call")
        if plan.container == "args" and read.params is not None:
            self.p_src = dict(p_out)  # the next call gets the returned arrays
        state_snaps = {c.state: res[i] for c, i in zip(states, i_s.values(), strict=True)}
        for j, c in enumerate(states):
            if j < len(read.rest):
                state_snaps[c.state] = read.rest[j]
                self.s_src[c.state] = out_ref.item((read.index or 0) + 1 + j)
        s_out: dict[str, Any] = {}
        for c in states:
            value = state_snaps[c.state]
            if c.role == "ostate":
                s_out.update(self.state_entries(value))
                continue
            try:
                s_out[c.state] = self.unpack(value, c.state, plan.state_prefix)
            except TargetFailure:
                continue
        self.p_now = p_out
        returned = "none" if out is None else "params" if read.whole else f"tuple:{len(out)}"
        return _output(res, p_out, s_out, self._mutated(res, put, i_g), returned)


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


class MethodSession(CallSession):
    """An optimizer object: constructed once per trajectory, its update method called every step.

    The method may take the parameters and gradients in any container (or one array per call,
    ``update(param, grad, name)`` once per key), a layer object with ``W``/``dW`` attributes, the
    step number, or a gradient function; ``plan.after`` (``step()``) is called after each update.
    """

    def _cls(self) -> Ref:
        """The class to construct: the target, or the class of a ``Class.method`` target."""
        if self.plan.owner:
            return TARGET.attr("__globals__").item(self.plan.owner)
        return TARGET

    def _method_args(self, values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in self.plan.step_calls:
            if c.role in ("hyper", "arg"):
                v = c.value
            elif c.role == "params" and self.plan.container == "args":
                v = Ref("P:" + c.state)
            elif c.role == "grads" and self.plan.container == "args":
                v = values["grads"][c.name]
            elif c.role in ("callback", "ignore"):
                v = None
            else:
                v = values.get(c.role)
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        return pos, kw

    def step(self, grads: Any) -> StepOutput:
        """One update: the method (per key when it takes a key), then ``plan.after``."""
        plan = self.plan
        b = self.batch()
        first = self.t == 0
        self.t += 1
        gp = plan.grad_prefix
        if first:
            if plan.container == "args":
                for k in self.keys:
                    b.put(np.array(self.params0[k], copy=True), name="P:" + k)
            elif plan.container != "attrs":
                b.put(self.pack(self.params0), name="P")
            pos: list[Any] = []
            kw: dict[str, Any] = {}
            for c in plan.calls:
                v = Ref("P") if c.role == "params" else c.value
                if c.positional:
                    pos.append(v)
                else:
                    kw[c.name] = v
            kw.update(plan.kwargs_hyper)
            b.call(self._cls(), pos, kw, name="OPT")
        elif self.p_src is not None and plan.container == "args":
            for k in self.keys:
                b.put(np.array(self.p_src[k], copy=True), name="P:" + k)
        elif self.p_src is not None:
            b.put(self.p_src, name="P")
        method = Ref("OPT").attr(plan.method)
        i_extra: dict[str, int] = {}
        if plan.container == "attrs":
            if first:
                b.put(Recorder(), name="L")
                for k in self.keys:
                    b.setattr(Ref("L"), k, np.array(self.params0[k], copy=True))
            put = {k: np.array(grads[k], copy=True) for k in self.keys}
            for k in self.keys:
                b.setattr(Ref("L"), (gp or "d") + k, put[k])
            pos, kw = self._method_args({"layer": Ref("L"), "step": self.t})
            b.call(method, pos, kw, name="OUT")
            i_extra = {k: b.snap(Ref("L").attr(k)) for k in self.keys}
            i_g = {k: b.snap(Ref("L").attr((gp or "d") + k)) for k in self.keys}
            i_outs: dict[str, int] = {}
        elif plan.per_key:
            put = {k: np.array(grads[k], copy=True) for k in self.keys}
            b.put(put, name="G")
            i_outs = {}
            for k in self.keys:
                values = {"params": Ref("P").item(k), "grads": Ref("G").item(k), "key": k, "step": self.t}
                pos, kw = self._method_args(values)
                i_outs[k] = b.snap(b.call(method, pos, kw, name="OUT:" + k))
            i_extra = {k: b.snap(Ref("P").item(k)) for k in self.keys}
            i_g = {"": b.snap(Ref("G"))}
        else:
            put, gvals = self._grads(b, grads)
            values = {"params": Ref("P"), "step": self.t, **gvals}
            pos, kw = self._method_args(values)
            out_ref = b.call(method, pos, kw, name="OUT")
            i_outs = {"": b.snap(out_ref)}
            if plan.container == "args":
                i_extra = {k: b.snap(Ref("P:" + k)) for k in self.keys}
            elif plan.container != "attrs":
                i_extra = {"": b.snap(Ref("P"))}
            i_g = {"": self._snap_grads(b, put)} if plan.container != "args" else self._snap_grads(b, put)
        if plan.after:
            b.call(Ref("OPT").attr(plan.after), [], {}, name="AFTER")
        i_opt = b.snap(Ref("OPT"), depth=4)
        res = self.run(b)
        self.p_src = None
        if plan.container == "attrs":
            p_out = {k: to_numpy(res[i], f"layer.{k}") for k, i in i_extra.items()}
            mutated = [f"layer.d{k}" for k, i in i_g.items() if changed(res[i], put[k])][:1]
        elif plan.per_key:
            new = {}
            for k in self.keys:
                out = res[i_outs[k]]
                got = out[0] if isinstance(out, (tuple, list)) and out else out
                new[k] = to_numpy(got if got is not None else res[i_extra[k]], f"{plan.param_names}[{k!r}]")
            p_out = new
            self.p_src = {k: np.array(v, copy=True) for k, v in new.items()}
            after = res[i_g[""]]
            mutated = [
                f"{plan.grad_names}[{k!r}]"
                for k in self.keys
                if not isinstance(after, Mapping) or changed(after.get(k), put[k])
            ][:1]
        else:
            out = res[i_outs[""]]
            has_params = any(c.role == "params" for c in plan.step_calls)
            if plan.container == "args":
                if out is not None:
                    p_out = self._args_return(out)
                else:
                    p_out = {k: to_numpy(res[i], k) for k, i in i_extra.items()}
                mutated = self._mutated(res, put, i_g)
            else:
                read = read_return(out, self.matches) if out is not None else _Read(None, None, [], False)
                if read.params is not None:
                    p_out = self.unpack(read.params, f"what {plan.method} returned")
                    self.p_src = Ref("OUT") if read.index is None else Ref("OUT").item(read.index)
                else:
                    if not has_params and not plan.ctor_params:
                        raise BadReturn(
                            f"{plan.method} returned {describe_value(out)}; expected the new parameters"
                        )
                    p_out = self.unpack(res[i_extra[""]], f"{plan.param_names} after {plan.method}")
                mutated = self._mutated(res, put, i_g[""])
        opt = res[i_opt]
        return _output(res, p_out, self._opt_states(opt.attrs if isinstance(opt, Obj) else {}), mutated)

    def _args_return(self, out: Any) -> dict[str, Any]:
        """``return w, b`` of ``update(t, w, b, dw, db)``: one array per parameter argument, in order."""
        items = list(out) if isinstance(out, (tuple, list)) else [out]
        order = [a for a, k in self.plan.arg_keys.items() if a == k]  # the parameter arguments, in order
        if len(items) < len(order):
            raise BadReturn(
                f"{self.plan.method} returned {describe_value(out)}; expected ({', '.join(order)})"
            )
        p_out = {k: to_numpy(v, k) for k, v in zip(order, items, strict=False)}
        self.p_src = p_out
        return p_out

    def _opt_states(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The object's attributes shaped like the parameters (per key, per container or per array)."""
        out: dict[str, Any] = {}
        base = self.plan.key_base
        for name, val in attrs.items():
            if self.keys and isinstance(val, Mapping) and all(user_key(k, base) in val for k in self.keys):
                first = val[user_key(self.keys[0], base)]
                if isinstance(first, (tuple, list)):  # cache[name] = (m, v): one state per position
                    for i in range(len(first)):
                        try:
                            tree = {k: to_numpy(val[user_key(k, base)][i], name) for k in self.keys}
                        except (TargetFailure, IndexError, TypeError):
                            break
                        if all(tree[k].shape == np.shape(self.params0[k]) for k in self.keys):
                            out[f"{name}[{i}]"] = tree
                    continue
                try:
                    tree = {k: to_numpy(val[user_key(k, base)], name) for k in self.keys}
                except TargetFailure:
                    continue
                if all(tree[k].shape == np.shape(self.params0[k]) for k in self.keys):
                    out[name] = tree
                continue
            if self.plan.container in ("attrs", "args") or self.plan.per_key:
                continue
            if self.matches(val):
                try:
                    out[name] = self.unpack(val, name)
                except TargetFailure:
                    continue
        return out


class LoopSession(CallSession):
    """A loop driver, ``adam(grad, x0, callback=None, num_iters=100, ...)``, that runs every step itself.

    Step ``k`` of the audit runs the driver afresh with ``num_iters=k`` and a gradient function
    that returns the audit's gradients in turn (whatever it is called with; one extra evaluation
    gets the last one again); the parameters after ``k`` steps are what the driver returns.
    """

    def __init__(self, worker: Any, plan: Plan, params0: Any) -> None:
        super().__init__(worker, plan, params0)
        self.grads: list[Any] = []

    def step(self, grads: Any) -> StepOutput:
        """Run the driver over the gradients so far."""
        plan = self.plan
        b = self.batch()
        self.t += 1
        self.grads.append(self.pack(grads, plan.grad_prefix))
        b.put(GradFn([*self.grads, self.grads[-1]]), name="GF")
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for c in plan.calls:
            if c.role in ("hyper", "arg"):
                v = c.value
            elif c.role == "params":
                v = self.pack(self.params0)
            elif c.role == "grad_fn":
                v = Ref("GF")
            elif c.role == "iters":
                v = self.t
            else:
                v = None
            if c.positional:
                pos.append(v)
            else:
                kw[c.name] = v
        kw.update(plan.kwargs_hyper)
        i_out = b.snap(b.call(TARGET, pos, kw, name="OUT"))
        i_calls = b.snap(Ref("GF").attr("calls"), depth=1)
        res = self.run(b)
        read = read_return(res[i_out], self.matches)
        if read.params is None:
            raise BadReturn(
                f"returned {describe_value(res[i_out])}; a loop driver returns the final parameters"
            )
        p_out = self.unpack(read.params, "the returned parameters")
        calls = res[i_calls]
        n = len(calls) if isinstance(calls, (list, tuple)) else self.t
        if n < self.t:
            raise BadReturn(
                f"called the gradient function {n} times in {self.t} iterations (num_iters={self.t})"
            )
        return _output(res, p_out, {}, [], returned="params")


class TripleSession(CallSession):
    """A jax.example_libraries-style optimizer: ``init, update, get_params = momentum(step_size, mass)``.

    The factory is called with the hyperparameters; then ``state = init(x0)``, and every step
    ``state = update(i, g, state)`` (``i`` counts from 0; the update function's arguments are
    bound by name: step, gradients, state) and ``params = get_params(state)``.
    """

    order: list[str] = ["step", "grads", "state"]  # noqa: RUF012 - replaced per session

    def step(self, grads: Any) -> StepOutput:
        """``state = update(i, g, state)``; the parameters from ``get_params(state)``."""
        plan = self.plan
        if self.t == 0:
            b = self.batch()
            pos = [c.value for c in plan.calls if c.positional]
            kw = {c.name: c.value for c in plan.calls if not c.positional}
            i_tri = b.snap(b.call(TARGET, pos, kw, name="TRI"), depth=1)
            b.call(Ref("TRI").item(0), [self.pack(self.params0)], {}, name="ST")
            i_desc = b.describe(Ref("TRI").item(1))
            res = self.run(b)
            tri = res[i_tri]
            if not (isinstance(tri, (tuple, list)) and len(tri) >= 2):
                raise BadReturn(
                    f"returned {describe_value(tri)}; an optimizer factory returns (init, update, get_params)"
                )
            self.has_get = len(tri) >= 3
            desc = res[i_desc]
            names = [p.get("name", "") for p in desc.get("params", [])] if isinstance(desc, Mapping) else []
            self.order = _update_order([str(n) for n in names])
        b = self.worker.batch()
        self.t += 1
        g = self.pack(grads, plan.grad_prefix)
        b.put(g, name="G")
        values = {"step": self.t - 1, "grads": Ref("G"), "state": Ref("ST")}
        b.call(Ref("TRI").item(1), [values[r] for r in self.order], {}, name="ST")
        params_ref = b.call(Ref("TRI").item(2), [Ref("ST")], {}, name="PX") if self.has_get else Ref("ST")
        i_p, i_st, i_g = b.snap(params_ref), b.snap(Ref("ST")), b.snap(Ref("G"))
        res = self.run(b)
        p_out = self.unpack(res[i_p], "get_params(state)")
        states = {
            k: v
            for k, v in self.state_entries(res[i_st]).items()
            if isinstance(v, float) or not _same_tree(v, p_out)
        }
        return _output(res, p_out, states, self._mutated(res, g, i_g), returned="state")

    has_get = True


def _same_tree(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return False


def _update_order(names: Sequence[str]) -> list[str]:
    """The roles of an update function's arguments: ``(i, g, state)`` by default, else by their names."""
    roles = []
    for n in names:
        low = n.lower()
        if low in ("i", "t", "step", "count", "it", "iteration", "k"):
            roles.append("step")
        elif "state" in low:
            roles.append("state")
        elif low.startswith("g") or low.startswith("d"):
            roles.append("grads")
    if sorted(roles) in (["grads", "state", "step"], ["grads", "state"]):
        return roles
    return ["step", "grads", "state"]


for _style in ("dict", "functional", "loop", "triple"):
    SESSIONS[_style] = {"loop": LoopSession, "triple": TripleSession}.get(_style, CallSession)
SESSIONS["object"] = MethodSession


def first_call(worker: Any, plan: Plan, params0: Any, grads: Any) -> tuple[Session, StepOutput]:
    """The first step, trying the other key forms on a ``KeyError`` (``dW1``/``W1``, layers from 0)."""
    keys = list(params0) if isinstance(params0, Mapping) else []
    forms: list[tuple[str, str, int]] = [(plan.grad_prefix, plan.state_prefix, plan.key_base)]
    if keys and plan.container in ("dict", "args"):
        for base in (1, 0):
            for gp, sp in (("d", "d"), ("", ""), ("d", ""), ("", "d")):
                if (gp, sp, base) not in forms:
                    forms.append((gp, sp, base))
    first_error: TargetFailure | None = None
    for gp, sp, base in forms:
        plan.grad_prefix, plan.state_prefix, plan.key_base = gp, sp, base
        session = SESSIONS[plan.style](worker, plan, params0)
        try:
            return session, session.step(grads)
        except TargetFailure as e:
            other = {p + user_key(k, bb) for k in keys for p in ("", "d") for bb in (0, 1)}
            if e.id != "raised-exception" or e.type_name != "KeyError" or e.key not in other:
                if first_error is None:
                    raise
                raise first_error from None
            first_error = first_error or e
    plan.grad_prefix, plan.state_prefix, plan.key_base = forms[0]
    assert first_error is not None
    raise first_error
