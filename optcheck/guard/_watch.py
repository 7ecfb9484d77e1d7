"""``optcheck.watch``: guard a ``torch.optim.Optimizer`` with one line, through its step hooks.

``handle = optcheck.watch(optimizer)`` registers a step pre-hook and a step post-hook
(``Optimizer.register_step_pre_hook`` / ``register_step_post_hook``). Before each checked
step the pre-hook copies what the checks need (the parameters, the states that must not
decrease, the momenta where a gradient is zero); after the step the post-hook screens every
parameter with torch reductions on the parameters' own device (one ``min``/``max``/``sum``
per array, one transfer of a few numbers per step) and, when a screen trips, hands the
step to :class:`optcheck.Guard`, which runs the invariants of :mod:`optcheck.invariants` and
writes the records: step, parameter name, state name, index, value and cause.

The update rule is read from the optimizer's class (``torch.optim.Adam`` -> ``adam``, ...)
and its hyperparameters from each parameter group, at every checked step (a learning-rate
schedule changes them). ``handle.remove()`` takes both hooks off and leaves the optimizer
exactly as it was; the handle is also a context manager.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .. import rules as _rules
from ..invariants import InvariantError, InvariantWarning, Violation
from ..rules import MONOTONE_ROLES, NONNEGATIVE_ROLES, Rule
from ._config import _check_mode, _env_mode, _user_stacklevel, logger
from ._guard import Guard
from ._sampling import Snapshot

__all__ = ["Watch", "torch_rule", "watch"]

#: torch.optim class name -> reference rule (the most derived class of the optimizer's MRO wins).
TORCH_RULES: dict[str, str] = {
    "SGD": "sgd",
    "Adam": "adam",
    "AdamW": "adamw",
    "RMSprop": "rmsprop",
    "Adagrad": "adagrad",
    "Adadelta": "adadelta",
    "Adamax": "adamax",
    "NAdam": "nadam",
    "RAdam": "radam",
    "ASGD": "asgd",
    "Rprop": "rprop",
    "Adafactor": "adafactor",
}
#: param_groups entries that select an implementation or are bookkeeping, not hyperparameters.
_NOT_HYPER = frozenset(
    {"params", "foreach", "fused", "capturable", "differentiable", "initial_lr", "name", "names"}
)
#: torch's tuple arguments, split by :meth:`Rule.normalise_hyper`.
_TUPLES = frozenset({"betas", "etas", "step_sizes", "eps"})
#: A step may exceed the rule's bound by this factor before the precise check is asked (as in invariants).
_SLACK = 1.001
#: Coordinates checked on a parameter whose ``.grad`` is None (it must not move).
_NO_GRAD_SAMPLE = 1024
#: Coordinates recomputed by the reference rule per parameter with ``shadow=True`` and no ``sample``.
_SHADOW_SAMPLE = 256


# ---------------------------------------------------------------------------
# The rule of an optimizer
# ---------------------------------------------------------------------------


def _torch_class_rule(optimizer: Any) -> tuple[str | None, bool]:
    """(rule name, whether the optimizer's class is that torch.optim class itself) from the MRO."""
    for i, cls in enumerate(type(optimizer).__mro__):
        if cls.__module__.startswith("torch.optim") and cls.__name__ in TORCH_RULES:
            return TORCH_RULES[cls.__name__], i == 0
    return None, False


def _hyper_from_group(
    rule_name: str, group: Mapping[str, Any], strict: bool
) -> tuple[dict[str, Any], list[str]]:
    """The rule's hyperparameters from one parameter group, and the group keys it cannot map.

    ``strict``: a key the rule does not know is returned as unmapped (a subclass's own
    hyperparameter); otherwise (a torch.optim class itself) it is ignored.
    """
    cls = _rules.rule_class(rule_name)
    known = {s.name for s in cls.hyper_specs()} | set(getattr(cls, "tuple_aliases", {}) or {})
    out: dict[str, Any] = {}
    unmapped: list[str] = []
    for key, value in group.items():
        if key in _NOT_HYPER:
            continue
        if key in known:
            if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
                value = value.item()  # a tensor learning rate
            if value is None:
                continue  # torch's "use the default" (Adafactor's eps1 is handled by the tuple)
            out[key] = value
        elif strict:
            unmapped.append(key)
    return out, unmapped


def torch_rule(optimizer: Any, group: int = 0) -> Rule | None:
    """The reference rule of a torch optimizer's parameter group ``group``, or None when it cannot be mapped.

    ``torch.optim.Adam(params, lr=0.01, amsgrad=True)`` -> ``adam(lr=0.01, amsgrad=True)``; a
    subclass maps when all its hyperparameters are its base class's.
    """
    name, exact = _torch_class_rule(optimizer)
    if name is None:
        return None
    hyper, unmapped = _hyper_from_group(name, optimizer.param_groups[group], strict=not exact)
    if unmapped:
        return None
    try:
        return _rules.get(name, **hyper)
    except (ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------
# Per-parameter records of one checked step
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Param:
    """What the pre-hook kept of one parameter (``idx``: the sampled flat indices, None: all of it)."""

    p: Any
    name: str
    shape: tuple[int, ...]
    dtype: Any
    grad: Any  # the gradient tensor the step will see (dense), or None
    idx: Any = None  # torch index tensor on the parameter's device
    idx_np: np.ndarray | None = None
    p0: Any = None
    g0: Any = None  # sampled gradient before the step (sampled mode)
    s0: dict[str, Any] = dataclasses.field(default_factory=dict)
    scalars0: dict[str, float] = dataclasses.field(default_factory=dict)
    had_state: bool = False
    zero_grad: bool = False
    g_finite: bool | None = None  # known from the pre-hook (full mode with a zero-gradient check)
    w: Any = None  # |g| + |momenta| before the step, where the gradient has a zero (full mode)
    roles: dict[str, str] = dataclasses.field(default_factory=dict)
    shadow0: dict[str, Any] = dataclasses.field(
        default_factory=dict
    )  # sampled "before" values for shadow=True


@dataclasses.dataclass
class _Group:
    index: int
    rule: Rule | None
    params: list[_Param]
    none_grad: list[tuple[Any, str, Any, Any]]  # (param, name, flat index, values before)


def _elementwise(x: Any, p: Any) -> bool:
    return hasattr(x, "shape") and tuple(x.shape) == tuple(p.shape) and x.dtype.is_floating_point


def _scalar(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    if hasattr(x, "shape") and tuple(x.shape) == () and hasattr(x, "item"):
        return float(x.item())
    return None


class Watch:
    """The handle :func:`watch` returns: the hooks on one optimizer and what they found.

    * ``remove()`` takes the hooks off (also on leaving a ``with`` block);
    * ``violations``: the violations of the last checked step (empty when it was clean);
    * ``steps``: ``optimizer.step()`` calls seen; ``checked``: steps actually checked;
    * ``rules``: the rule used for each parameter group at the last checked step (None:
      invariants only).
    """

    def __init__(
        self,
        optimizer: Any,
        rule: str | Rule | None,
        mode: str | Callable[[list[Violation]], Any],
        sample: int | None,
        shadow: bool,
        every: int,
        names: Any,
        seed: int = 0,
    ) -> None:
        import torch

        self._torch = torch
        self.optimizer = optimizer
        self._mode = _check_mode(mode)
        env = _env_mode()
        self.mode: str | Callable[[list[Violation]], Any] = env if env is not None else self._mode
        self.sample = sample
        self.shadow = shadow
        self.every = every
        self.steps = 0
        self.checked = 0
        self.violations: list[Violation] = []
        self.rules: list[Rule | None] = []
        self._rng = np.random.default_rng(seed)
        self._seed = seed
        self._names = _param_names(names)
        self._user_rule = rule
        self._class_rule, self._exact = _torch_class_rule(optimizer)
        self._rule_cache: dict[Any, Rule | None] = {}
        self._guards: dict[tuple[Any, ...], Guard] = {}
        self._buffers: dict[tuple[int, str], Any] = {}
        self._moves: dict[int, tuple[Rule, bool]] = {}
        self._warned = False
        self._pending: list[_Group] | None = None
        self._removed = False
        self._resolve_rules()  # validate rule= and say once when only the invariants apply
        self._pre = optimizer.register_step_pre_hook(self._pre_hook)
        self._post = optimizer.register_step_post_hook(self._post_hook)

    # -- lifecycle -----------------------------------------------------------------

    def remove(self) -> None:
        """Take both hooks off the optimizer and drop every copy; the optimizer is as before :func:`watch`."""
        if self._removed:
            return
        self._pre.remove()
        self._post.remove()
        self._removed = True
        self._buffers.clear()
        self._pending = None
        self._guards.clear()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        names = [r.name if r is not None else None for r in self.rules]
        state = "removed" if self._removed else "active"
        return f"Watch({type(self.optimizer).__name__}, rules={names}, mode={self.mode!r}, {state})"

    # -- rules ---------------------------------------------------------------------

    def _resolve_rules(self) -> None:
        self.rules = [self._rule_for(g) for g in self.optimizer.param_groups]

    def _rule_for(self, group: Mapping[str, Any]) -> Rule | None:
        user = self._user_rule
        key = tuple((k, _hashable(v)) for k, v in group.items() if k not in _NOT_HYPER)
        if key in self._rule_cache:
            return self._rule_cache[key]
        rule: Rule | None = None
        reason = ""
        if isinstance(user, Rule):
            hyper, _ = _hyper_from_group(user.name, group, strict=False)
            valid = {s.name for s in type(user).hyper_specs()}
            changes = type(user).normalise_hyper(
                {k: v for k, v in hyper.items() if k in valid or k in _TUPLES}
            )
            rule = user.replace(**changes) if changes else user
        elif isinstance(user, str):
            hyper, _ = _hyper_from_group(user, group, strict=False)
            rule = _rules.get(user, **hyper)
        elif self._class_rule is not None:
            hyper, unmapped = _hyper_from_group(self._class_rule, group, strict=not self._exact)
            if unmapped:
                reason = (
                    f"{type(self.optimizer).__name__} subclasses a torch.optim class but its parameter groups "
                    f"have hyperparameters the {self._class_rule} rule does not know ({unmapped})"
                )
            else:
                try:
                    rule = _rules.get(self._class_rule, **hyper)
                except (ValueError, TypeError) as e:
                    reason = f"its hyperparameters do not make a {self._class_rule} rule ({e})"
        else:
            reason = (
                f"{type(self.optimizer).__name__} is not a torch.optim optimizer optcheck can map to a rule"
            )
        if rule is None and not self._warned:
            self._warned = True
            warnings.warn(
                f"optcheck.watch: {reason}; checking the invariants only (finiteness, shapes, dtypes, "
                f"parameters without a gradient). Pass rule=<name> (one of {_rules.names()}) to check the "
                "rule's invariants too.",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )
        if len(self._rule_cache) > 256:
            self._rule_cache.clear()
        self._rule_cache[key] = rule
        return rule

    def _moves_without_gradient(self, rule: Rule) -> bool:
        """Whether ``rule`` may move a coordinate whose gradient and momenta are zero (probed once per rule)."""
        hit = self._moves.get(id(rule))
        if hit is not None and hit[0] is rule:
            return hit[1]
        p: Any = np.array([0.5, -1.5])
        moves = False
        try:
            state = rule.init(p)
            if any(state[k] is None or np.shape(state[k]) != (2,) for k in rule.array_keys()):
                moves = True
            else:
                for g0 in (1.0, -0.5, 0.25):
                    with np.errstate(all="ignore"):
                        p, state = rule.step(p, np.array([g0, 0.0]), state)
                    if p[1] != -1.5:
                        moves = True
                        break
        except (ValueError, TypeError, ZeroDivisionError, FloatingPointError, NotImplementedError):
            moves = True
        self._moves[id(rule)] = (rule, moves)
        return moves

    # -- hooks ---------------------------------------------------------------------

    def _due(self) -> bool:
        return self.mode != "off" and (self.steps - 1) % self.every == 0

    def _pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        self._pending = None
        if not self._due():
            return
        with self._torch.no_grad():
            self._pending = self._snapshot(optimizer)

    def _post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.checked += 1
        with self._torch.no_grad():
            found = self._check(optimizer, pending)
        self.violations = found
        if found:
            self._handle(found)

    def _handle(self, found: list[Violation]) -> None:
        mode = self.mode
        if mode == "raise":
            raise InvariantError(found)
        if mode == "warn":
            warnings.warn(InvariantWarning(str(InvariantError(found))), stacklevel=_user_stacklevel())
        elif mode == "log":
            logger.warning("%s", InvariantError(found))
        elif callable(mode):
            mode(found)

    # -- before the step -----------------------------------------------------------

    def _buffer(self, p: Any, tag: str, like: Any) -> Any:
        key = (id(p), tag)
        buf = self._buffers.get(key)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._torch.empty_like(like, memory_format=self._torch.contiguous_format)
            self._buffers[key] = buf
        return buf

    def _name(self, p: Any, gi: int, i: int) -> str:
        name = self._names.get(id(p))
        return name if name is not None else f"group{gi}.param{i}"

    def _snapshot(self, optimizer: Any) -> list[_Group]:
        torch = self._torch
        groups: list[_Group] = []
        rules: list[Rule | None] = []
        zero_probe: list[tuple[_Param, Any]] = []
        sampled = self.sample is not None
        for gi, group in enumerate(optimizer.param_groups):
            rule = self._rule_for(group)
            rules.append(rule)
            roles = dict(type(rule).state_roles) if rule is not None else {}
            zero_check = rule is not None and not self._moves_without_gradient(rule)
            recs: list[_Param] = []
            none_grad: list[tuple[Any, str, Any, Any]] = []
            for i, p in enumerate(group["params"]):
                name = self._name(p, gi, i)
                flat = p.detach().reshape(-1)
                if p.grad is None:
                    n = flat.shape[0]
                    k = min(n, _NO_GRAD_SAMPLE)
                    ix = None if k == n else torch.as_tensor(self._rng.integers(0, n, k), device=p.device)
                    none_grad.append((p, name, ix, (flat if ix is None else flat[ix]).clone()))
                    continue
                g = p.grad.to_dense() if p.grad.is_sparse else p.grad
                rec = _Param(p=p, name=name, shape=tuple(p.shape), dtype=p.dtype, grad=g, roles=roles)
                state = optimizer.state.get(p)  # .get: never adds an entry to torch's defaultdict
                rec.had_state = bool(state)
                for k, v in (state or {}).items():
                    s = _scalar(v) if not _elementwise(v, p) else None
                    if s is not None:
                        rec.scalars0[str(k)] = s
                n = flat.shape[0]
                if sampled or self.shadow:
                    k = self.sample if sampled else _SHADOW_SAMPLE
                    assert k is not None
                    if n > k:
                        rec.idx_np = np.sort(self._rng.integers(0, n, k))
                        rec.idx = torch.as_tensor(rec.idx_np, device=p.device)
                if sampled:
                    rec.p0 = _take(p.detach(), rec.idx).clone()
                    rec.g0 = _take(g, rec.idx).clone()
                    for key, v in (state or {}).items():
                        if _elementwise(v, p):
                            rec.s0[str(key)] = _take(v, rec.idx).clone()
                else:
                    rec.p0 = self._buffer(p, "p0", p).copy_(p)
                    for key, v in (state or {}).items():
                        if _elementwise(v, p) and roles.get(str(key)) in MONOTONE_ROLES:
                            rec.s0[str(key)] = self._buffer(p, f"s0:{key}", v).copy_(v)
                    if self.shadow:
                        rec.shadow0["params"] = _take(p.detach(), rec.idx).clone()
                        rec.shadow0["grads"] = _take(g, rec.idx).clone()
                        for key, v in (state or {}).items():
                            if _elementwise(v, p):
                                rec.shadow0[str(key)] = _take(v, rec.idx).clone()
                    if zero_check and g.numel():
                        rec.w = torch.abs(g, out=self._buffer(p, "w", g))
                        zero_probe.append((rec, torch.stack(torch.aminmax(rec.w))))
                recs.append(rec)
            groups.append(_Group(gi, rule, recs, none_grad))
        self.rules = rules
        if zero_probe:
            # one transfer: where a gradient has an exact zero, w = |g| + |momenta| (before the step) is 0
            # exactly at the coordinates that must not move; the post-hook tests d/w there
            numbers = torch.cat([t.to(torch.float64) for _, t in zero_probe]).tolist()
            for j, (rec, _) in enumerate(zero_probe):
                lo, hi = numbers[2 * j], numbers[2 * j + 1]
                rec.g_finite = math.isfinite(hi) and math.isfinite(lo)
                rec.zero_grad = lo == 0.0
                if not rec.zero_grad:
                    rec.w = None
                    continue
                for key, v in (optimizer.state.get(rec.p) or {}).items():
                    if rec.roles.get(str(key)) in ("first-moment", "momentum") and _elementwise(v, rec.p):
                        rec.w.add_(v.abs())
        return groups

    # -- after the step ------------------------------------------------------------

    def _check(self, optimizer: Any, groups: list[_Group]) -> list[Violation]:
        found: list[Violation] = []
        for grp in groups:
            found.extend(self._check_none_grad(grp))
        screen = _Screen(self._torch)
        for grp in groups:
            for rec in grp.params:
                self._screen(optimizer, grp, rec, screen)
        tripped, below = screen.run()
        for grp in groups:
            recs = [r for r in grp.params if id(r) in tripped]
            if recs:
                found.extend(self._precise(optimizer, grp, recs, shadow=False))
            if self.shadow and grp.rule is not None and grp.params:
                found.extend(self._precise(optimizer, grp, grp.params, shadow=True))
        for rec, pair in below:
            found.append(self._max_violation(optimizer, rec, pair))
        return _dedupe(found)

    def _screen(self, optimizer: Any, grp: _Group, rec: _Param, screen: _Screen) -> None:
        """Queue the one-pass tests of one parameter's step; together they imply the precise checks pass."""
        torch = self._torch
        rule, roles, p, g = grp.rule, rec.roles, rec.p, rec.grad
        if tuple(p.shape) != rec.shape or p.dtype != rec.dtype or tuple(g.shape) != rec.shape:
            screen.trip(rec)
            return
        if p.numel() == 0:
            return
        sampled = self.sample is not None
        state = optimizer.state.get(p) or {}
        t = _scalar(state.get("step")) if "step" in state else None
        bound = None
        if rule is not None:
            try:
                bound = rule.update_bound(int(t) if t is not None else self.steps)
            except (ValueError, TypeError, OverflowError):
                bound = None
        if sampled:
            p1, g1 = _take(p.detach(), rec.idx), _take(g, rec.idx)
            d = p1 - rec.p0
            screen.add(rec, "same", (g1 != rec.g0).any())
        else:
            p1, g1 = p.detach(), g
            d = torch.sub(p1, rec.p0, out=self._buffer(p, "d", p))
        screen.add(rec, "step", torch.stack(torch.aminmax(d)), bound)
        if rec.g_finite is None:
            screen.add(rec, "finite", g1.sum())
        elif not rec.g_finite:
            screen.trip(rec)
        s1: dict[str, Any] = {}
        for key, v in state.items():
            key = str(key)
            role = roles.get(key)
            if not hasattr(v, "shape") or not v.dtype.is_floating_point:
                continue
            if tuple(v.shape) == ():
                s0 = rec.scalars0.get(key)
                if role == "counter" and s0 is not None:
                    screen.add(rec, "counter", v.reshape(()), s0)
                continue
            if not _elementwise(v, p):
                if role in NONNEGATIVE_ROLES:  # factored (Adafactor): small, checked whole
                    screen.add(rec, "nonneg", torch.stack(torch.aminmax(v)))
                else:
                    screen.add(rec, "finite", v.sum())
                continue
            x = s1[key] = _take(v, rec.idx) if sampled else v
            if role in NONNEGATIVE_ROLES:
                screen.add(rec, "nonneg", torch.stack(torch.aminmax(x)))
            else:
                screen.add(rec, "finite", x.sum())
            x0 = rec.s0.get(key)
            if role in MONOTONE_ROLES and x0 is not None:
                diff = (x - x0) if sampled else torch.sub(x, x0, out=self._buffer(p, "d2", x))
                screen.add(rec, "nonneg", torch.stack(torch.aminmax(diff)))
            if sampled and x0 is None and rec.had_state:
                screen.trip(rec)  # a state entry that appeared mid-run: the precise checks look at it
        centered = _centered_keys(rule, roles)
        if centered is not None and all(k in s1 for k in centered):
            v, m = s1[centered[0]], s1[centered[1]]
            screen.add(rec, "nonneg", torch.stack(torch.aminmax(v - m * m)))
        pair = _max_pair(rule, roles)
        if pair is not None and all(k in s1 for k in pair):
            screen.add(rec, "max", (s1[pair[0]] - s1[pair[1]]).min(), pair)
        if rec.w is not None:
            # d/w is ±inf exactly where w = 0 (zero gradient, zero momenta) and the parameter moved
            # (NaN where it did not move: ignored); an overflow elsewhere only sends the step to Guard
            q = torch.div(d, rec.w, out=rec.w).abs_()
            screen.add(rec, "finite", torch.nansum(q))
        elif sampled and rule is not None and not self._moves_without_gradient(rule):
            zero = g1 == 0
            for key, x0 in rec.s0.items():
                if roles.get(key) in ("first-moment", "momentum"):
                    zero &= x0 == 0
            screen.add(rec, "false", (zero & (d != 0) & torch.isfinite(p1)).any())

    def _max_violation(self, optimizer: Any, rec: _Param, pair: tuple[str, str]) -> Violation:
        """AMSGrad's running maximum below the second moment: the maximum was not stored."""
        state = optimizer.state.get(rec.p) or {}
        mx, v = state[pair[0]], state[pair[1]]
        bad = (mx < v).reshape(-1)
        cnt = int(bad.sum())
        j = int(bad.nonzero()[0, 0]) if cnt else 0
        index = tuple(int(i) for i in np.unravel_index(j, rec.shape)) if rec.shape else ()
        step = _scalar(state.get("step")) if "step" in state else None
        step_i = int(step) if step is not None else self.steps
        a, b = float(mx.reshape(-1)[j]), float(v.reshape(-1)[j])
        where = f"state[{pair[0]!r}][{rec.name!r}]"
        return Violation(
            id="accumulator-decreased",
            where=where,
            path=(rec.name,),
            message=(
                f"{where} is below state[{pair[1]!r}][{rec.name!r}] after step {step_i}: {cnt} of {mx.numel()} entries; "
                f"first at {index}: {pair[0]}={a:.3g} < {pair[1]}={b:.3g}. A running maximum can never be below "
                "the value it is the maximum of."
            ),
            hint=(
                "AMSGrad's maximum is computed but not stored back (a local rebinding such as "
                "`max_sq = torch.maximum(max_sq, exp_avg_sq)` leaves the state unchanged): update the state "
                "in place, `torch.maximum(max_sq, exp_avg_sq, out=max_sq)`."
            ),
            step=step_i,
            shape=rec.shape,
            dtype=str(rec.dtype).rsplit(".", 1)[-1],
            count=cnt,
            counts={"below": cnt},
            size=int(mx.numel()),
            index=index,
            value=a,
            related={pair[1]: b},
        )

    # -- the precise checks and the reference --------------------------------------

    def _guard(self, rule: Rule | None, sampled: bool, shadow: bool) -> Guard:
        key = (rule, sampled, shadow)
        guard = self._guards.get(key)
        if guard is None:
            guard = Guard(
                rule,
                mode=_ignore,
                sample=(self.sample or _SHADOW_SAMPLE) if sampled else None,
                shadow=shadow,
                seed=self._seed,
            )
            guard.mode = _ignore  # OPTCHECK_GUARD is honoured by the watch itself
            if len(self._guards) > 64:
                self._guards.clear()
            self._guards[key] = guard
        return guard

    def _precise(self, optimizer: Any, grp: _Group, recs: list[_Param], shadow: bool) -> list[Violation]:
        """Run :class:`Guard` on the step of ``recs`` (one parameter group): find and describe what broke.

        ``shadow``: the reference rule recomputed on the shadow sample (``shadow=True`` without
        ``sample=``, the sampled "before" values the pre-hook kept).
        """
        rule = grp.rule
        sampled = self.sample is not None or shadow
        out: list[Violation] = []
        # one call per step counter and set of state entries (a group's parameters normally share them;
        # Adafactor keeps row and column statistics for matrices and one variance for vectors)
        by_step: dict[Any, list[_Param]] = {}
        for rec in recs:
            state = optimizer.state.get(rec.p) or {}
            t = _scalar(state.get("step")) if "step" in state else None
            by_step.setdefault((t, tuple(sorted(str(k) for k in state))), []).append(rec)
        for (t1, _), part in by_step.items():
            params: dict[str, Any] = {}
            grads: dict[str, Any] = {}
            state1: dict[str, Any] = {}
            p0s: dict[str, Any] = {}
            g0s: dict[str, Any] = {}
            state0: dict[str, Any] = {}
            samples: dict[tuple[str, ...], np.ndarray | None] = {}
            shapes: dict[tuple[str, ...], tuple[int, ...]] = {}
            dtypes: dict[tuple[str, ...], Any] = {}
            t0: float | None = None
            for rec in part:
                n = rec.name
                params[n] = rec.p.detach()
                grads[n] = rec.grad
                state = optimizer.state.get(rec.p) or {}
                before0 = rec.shadow0 if (shadow and self.sample is None) else rec.s0
                init: dict[str, Any] | None = None
                for key, v in state.items():
                    key = str(key)
                    if not hasattr(v, "shape") or tuple(v.shape) == ():
                        continue
                    if not _elementwise(v, rec.p):
                        if not sampled:
                            state1.setdefault(key, {})[n] = v  # factored: whole, its value after as before
                            state0.setdefault(key, {})[n] = v
                        continue
                    before = before0.get(key)
                    if before is None and not rec.had_state and rule is not None:
                        # the first step: torch built the state inside step(); the rule's init is what it was
                        if init is None:
                            init = _init_state(rule, before0.get("params", rec.p0))
                        before = init.get(key)
                    if before is None:
                        if shadow:
                            continue  # unknown before the step: the reference cannot be recomputed
                        before = v if not sampled else _take(v, rec.idx)  # not read by the checks
                    state1.setdefault(key, {})[n] = v
                    state0.setdefault(key, {})[n] = before
                if rec.scalars0.get("step") is not None:
                    t0 = rec.scalars0["step"]
                if sampled:
                    if shadow and self.sample is None:
                        p0s[n], g0s[n] = rec.shadow0["params"], rec.shadow0["grads"]
                    else:
                        p0s[n], g0s[n] = rec.p0, rec.g0
                    samples[(n,)] = rec.idx_np
                    shapes[(n,)] = rec.shape
                    dtypes[(n,)] = rec.dtype
                else:
                    p0s[n] = rec.p0
            if t1 is not None:
                step_now = int(t1)
            else:  # no counter in torch's state (SGD): the first step is the one that built the state
                had = any(r.had_state for r in part)
                step_now = max(self.steps, 2) if had else 1
            if t1 is not None:
                state1["step"] = t1
                state0["step"] = t0 if t0 is not None else 0.0
            for key in [k for k in state1 if k not in state0]:
                del state1[key]
            snap = Snapshot(
                params=p0s,
                grads=g0s if sampled else None,
                state=state0,
                samples=samples if sampled else None,
                shapes=shapes,
                dtypes=dtypes,
                step=step_now - 1,
            )
            guard = self._guard(rule, sampled, shadow)
            if shadow:
                self._sync_tracker(guard, part)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                found = guard.check(params=params, grads=grads, state=state1, step=step_now, before=snap)
            out.extend(found)
        return out

    def _sync_tracker(self, guard: Guard, part: list[_Param]) -> None:
        """Hand the reference the schedule scalars torch keeps (NAdam's mu_product, ASGD's eta, mu)."""
        rule = guard.rule
        assert rule is not None
        extra = [k for k in rule.scalar_states if k != "step"]
        if not extra:
            return
        rec = part[0]
        if all(k in rec.scalars0 for k in extra):
            tracker = rule.init(np.zeros(1))
            tracker.update(
                {"step": int(rec.scalars0.get("step", 0.0)), **{k: rec.scalars0[k] for k in extra}}
            )
            guard._tracker = tracker
        elif not rec.had_state:
            guard._tracker = None  # the first step: the rule's own initial values

    def _check_none_grad(self, grp: _Group) -> list[Violation]:
        """A parameter whose ``.grad`` is None must not move (torch skips it)."""
        out: list[Violation] = []
        for p, name, ix, before in grp.none_grad:
            flat = p.detach().reshape(-1)
            now = flat if ix is None else flat[ix]
            if now.shape != before.shape:
                continue
            same = (now == before) | (now.isnan() & before.isnan())
            if bool(same.all()):
                continue
            j = int((~same).nonzero()[0, 0])
            flat_j = int(ix[j]) if ix is not None else j
            index = tuple(int(i) for i in np.unravel_index(flat_j, tuple(p.shape))) if p.dim() else ()
            cnt = int((~same).sum())
            delta = float(now[j]) - float(before[j])
            step = self.steps
            where = f"params[{name!r}]"
            out.append(
                Violation(
                    id="update-without-gradient",
                    where=where,
                    path=(name,),
                    message=(
                        f"{where} moved at step {step} although its .grad is None (torch skips such a parameter): "
                        f"{cnt} of {now.numel()} {'sampled ' if ix is not None else ''}entries; first at "
                        f"{index}: moved by {delta:.3g} (from {float(before[j]):.3g})."
                    ),
                    hint=(
                        "A parameter without a gradient must not be updated: skip it (`if p.grad is None: "
                        "continue`) before applying weight decay or momentum to it."
                    ),
                    step=step,
                    shape=tuple(p.shape),
                    dtype=str(p.dtype).rsplit(".", 1)[-1],
                    count=cnt,
                    counts={"moved": cnt},
                    size=int(now.numel()),
                    index=index,
                    value=delta,
                    related={"p": float(before[j])},
                    sampled=ix is not None,
                )
            )
        return out


def _ignore(found: list[Violation]) -> None:
    return None


def _hashable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return float(v.item())
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


def _take(x: Any, idx: Any) -> Any:
    """The sampled coordinates of ``x`` (a 1-d gather), or ``x`` itself when it is not sampled."""
    return x if idx is None else x.reshape(-1)[idx]


def _init_state(rule: Rule, p0: Any) -> dict[str, Any]:
    try:
        return rule.init(p0)
    except (ValueError, TypeError, NotImplementedError):
        return {}


def _centered_keys(rule: Rule | None, roles: Mapping[str, str]) -> tuple[str, str] | None:
    if rule is None or getattr(rule, "centered", False) is not True:
        return None
    v = [k for k, r in roles.items() if r == "second-moment"]
    m = [k for k, r in roles.items() if r == "first-moment"]
    return (v[0], m[0]) if len(v) == 1 and len(m) == 1 else None


def _max_pair(rule: Rule | None, roles: Mapping[str, str]) -> tuple[str, str] | None:
    """(running maximum, second moment) keys when the rule keeps a running maximum of its second moment."""
    if rule is None or getattr(rule, "amsgrad", False) is not True:
        return None
    mx = [k for k, r in roles.items() if r == "max-second-moment"]
    v = [k for k, r in roles.items() if r == "second-moment"]
    return (mx[0], v[0]) if len(mx) == 1 and len(v) == 1 else None


class _Screen:
    """One-pass tests queued per parameter and decided with one transfer of their numbers."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.vals: list[Any] = []
        self.tests: list[tuple[_Param, str, Any, int]] = []
        self.tripped: set[int] = set()

    def trip(self, rec: _Param) -> None:
        self.tripped.add(id(rec))

    def add(self, rec: _Param, kind: str, t: Any, extra: Any = None) -> None:
        t = t.reshape(-1)
        self.vals.append(t.to(self.torch.float64))
        self.tests.append((rec, kind, extra, int(t.shape[0])))

    def run(self) -> tuple[set[int], list[tuple[_Param, Any]]]:
        """(ids of the parameters whose tests tripped, AMSGrad maxima below their second moment)."""
        numbers = self.torch.cat(self.vals).tolist() if self.vals else []
        below: list[tuple[_Param, Any]] = []
        pos = 0
        for rec, kind, extra, width in self.tests:
            x = numbers[pos : pos + width]
            pos += width
            if kind == "max":
                if not x[0] >= 0:
                    below.append((rec, extra))
            elif not _passes(kind, x, extra):
                self.tripped.add(id(rec))
        return self.tripped, below


def _passes(kind: str, x: list[float], extra: Any) -> bool:
    """Whether a screen's numbers imply that the precise checks find nothing (NaN compares False: trips)."""
    if kind == "step":
        lo, hi = x
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return False
        if extra is None:
            return True
        # a larger step may still be within a + b·|p|: the precise check decides
        return bool(max(-lo, hi) <= _SLACK * float(extra[0]))
    if kind == "finite":
        return math.isfinite(x[0])
    if kind == "nonneg":
        lo, hi = x
        return lo >= 0 and math.isfinite(hi)
    if kind == "counter":
        return bool(x[0] == float(extra) + 1)
    if kind in ("false", "same"):
        return x[0] == 0
    raise AssertionError(kind)


def _dedupe(found: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, str]] = set()
    out: list[Violation] = []
    for v in found:
        key = (v.id, v.where)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _param_names(names: Any) -> dict[int, str]:
    """id(parameter) -> the user's name, from ``names=model`` (``named_parameters``), a dict or pairs."""
    if names is None:
        return {}
    pairs: Iterable[Any]
    if hasattr(names, "named_parameters") and callable(names.named_parameters):
        pairs = names.named_parameters()
    elif isinstance(names, Mapping):
        pairs = names.items()
    elif isinstance(names, Iterable) and not isinstance(names, (str, bytes)):
        pairs = names
    else:
        raise TypeError(
            "names must be a torch.nn.Module (its named_parameters() name the parameters), a dict "
            f"{{name: parameter}} or (name, parameter) pairs, got {type(names).__name__}"
        )
    out: dict[int, str] = {}
    for item in pairs:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(
                f"names must give (name, parameter) pairs with string names, got an item {item!r:.80}"
            )
        out.setdefault(id(item[1]), item[0])
    return out


def watch(
    optimizer: Any,
    rule: str | Rule | None = None,
    *,
    mode: str | Callable[[list[Violation]], Any] = "raise",
    sample: int | None = None,
    shadow: bool = False,
    every: int = 1,
    names: Any = None,
) -> Watch:
    """Check every step of a ``torch.optim.Optimizer`` against the invariants of its update rule.

    ``handle = optcheck.watch(opt, names=model)``, one line after the optimizer is built; the
    training loop does not change. At the first step that breaks an invariant the handle
    raises :class:`~optcheck.InvariantError` from ``opt.step()``, naming the step, the
    parameter (``params['fc1.weight']``), the state (``exp_avg_sq['fc1.weight']``), the index,
    the value and the likely cause, as :class:`optcheck.Guard` does.

    * ``rule``: None reads the rule from the optimizer's class (``torch.optim.Adam``, ``AdamW``,
      ``SGD``, ``RMSprop``, ``Adagrad``, ``Adadelta``, ``Adamax``, ``NAdam``, ``RAdam``, ``ASGD``,
      ``Rprop``, ``Adafactor`` and subclasses whose parameter groups hold only their base class's
      hyperparameters); a rule name or :class:`~optcheck.rules.Rule` names it for any other
      optimizer. Hyperparameters (``lr``, ``betas``, ``amsgrad``, ``nesterov``, ``centered``,
      ``maximize``, ...) are read from each parameter group at every checked step. An optimizer
      optcheck cannot map gets the rule-free invariants only, with one warning saying so.
    * ``mode``: ``"raise"``, ``"warn"``, ``"log"``, ``"off"`` or a callable receiving the
      violations; the environment variable ``OPTCHECK_GUARD`` overrides it.
    * ``sample=K``: check K random coordinates of each parameter (and of its state) per step
      instead of all; the pre-hook then copies only those.
    * ``shadow=True``: also recompute the reference rule on sampled coordinates and report
      ``differs-from-reference`` beyond the dtype's tolerance (``optcheck._compare``).
    * ``every=N``: check every N-th step only.
    * ``names``: the model (``names=model`` names parameters by ``model.named_parameters()``,
      ``fc1.weight``), a dict ``{name: parameter}`` or ``(name, parameter)`` pairs; default
      ``group0.param3``.

    Everything runs on the parameters' device with torch reductions; a parameter whose
    ``.grad`` is None must not move (checked on up to 1024 coordinates). Returns a
    :class:`Watch`; ``handle.remove()`` (or leaving ``with optcheck.watch(opt): ...``) takes
    the hooks off and leaves the optimizer exactly as it was.
    """
    torch = sys.modules.get("torch")
    optim_base = getattr(getattr(torch, "optim", None), "Optimizer", None) if torch is not None else None
    if optim_base is None or not isinstance(optimizer, optim_base):
        raise TypeError(
            "watch(optimizer) takes a torch.optim.Optimizer (for example torch.optim.Adam(model.parameters())), "
            f"got {type(optimizer).__name__}; for a numpy update function use optcheck.guarded(update_fn, rule=...)"
        )
    if rule is not None and not isinstance(rule, (str, Rule)):
        raise TypeError(
            f"rule must be a rule name (one of {_rules.names()}), a Rule or None, got {type(rule).__name__}"
        )
    if isinstance(rule, str):
        _rules.rule_class(rule)  # ValueError listing the valid names
    for label, value in (("every", every),):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}={value!r} is invalid; expected a whole number >= 1")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise ValueError(
            f"sample={sample!r} is invalid; expected None (check every entry) or a whole number >= 1"
        )
    if not isinstance(shadow, bool):
        raise ValueError(f"shadow={shadow!r} is invalid; expected True or False")
    return Watch(optimizer, rule, mode, sample, shadow, every, names)
