"""The :class:`Rule` base class, hyperparameter specs and the sub-expression hooks.

A rule is an immutable value (a frozen dataclass) holding its hyperparameters and
conventions. ``rule.init(params)`` builds a state; ``rule.step(params, grads, state)``
returns ``(new_params, new_state)`` and never mutates its inputs; ``rule.step_(params,
grads, state)`` computes the same numbers into ``params`` and ``state`` (in place).
Both forms run the same ``_step_leaf`` (on blocks of large numpy arrays, so that the
temporaries stay in the CPU cache), so they agree bit for bit.

Every rule is written once, against the array API (``array_api_compat``), so the
same code serves numpy arrays, ``array_api_strict`` arrays and torch tensors.
The arithmetic that bugs in the wild get wrong (the square in a second moment,
the square root, where epsilon goes, bias correction, the running average, the
weight-decay term, the momentum buffer, the descent sign) is written through an
:class:`Ops` object. Diagnosis builds a *mutant* of a rule by swapping in an ``Ops``
with one sub-expression replaced; the rule's equations are never copied.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace

from .._core import validate as _v
from .._core.errors import UsageError, UsageTypeError
from .._tree import Path, Tree, describe, flatten, path_str, unflatten, zip_trees

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_OPS",
    "MONOTONE_ROLES",
    "NONNEGATIVE_ROLES",
    "ROLES",
    "Hyper",
    "Ops",
    "Rule",
    "convention",
    "hyper",
]

Array = Any

# ---------------------------------------------------------------------------
# State roles (what each state entry is; the invariant checkers rely on them)
# ---------------------------------------------------------------------------

ROLES: Mapping[str, str] = {
    "counter": "the number of steps already taken (an int that grows by exactly one per step)",
    "first-moment": "a running average of the gradient (any sign)",
    "second-moment": "a running average of squared gradients or squared updates; never negative",
    "max-second-moment": "the running maximum of a second moment (AMSGrad); never negative, never decreases",
    "accumulator": "a running sum of squared gradients (Adagrad); never negative, never decreases",
    "norm": "a decaying running max-norm of the gradient (Adamax); never negative, may decrease",
    "momentum": "a momentum buffer or velocity (any sign)",
    "average": "a running average of the parameters (ASGD)",
    "step-size": "per-coordinate step sizes (Rprop); never negative",
    "previous-gradient": "the gradient of the previous step, as the rule used it (Rprop)",
    "schedule": "a number of the rule's own schedule (NAdam's mu_product, ASGD's eta and mu)",
}
"""Every role a state entry can have (``type(rule).state_roles`` maps state keys to these)."""

NONNEGATIVE_ROLES: frozenset[str] = frozenset(
    {"second-moment", "max-second-moment", "accumulator", "norm", "step-size"}
)
"""Roles whose entries are never negative in a correct rule (given finite inputs)."""

MONOTONE_ROLES: frozenset[str] = frozenset({"max-second-moment", "accumulator"})
"""Roles whose entries never decrease from one step to the next in a correct rule."""


# ---------------------------------------------------------------------------
# Hyperparameter specs
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hyper:
    """The spec of one hyperparameter or convention keyword of a rule.

    ``kind`` is ``"float"``, ``"int"``, ``"bool"``, ``"choice"`` or ``"optional-float"``.
    ``low``/``high`` bound a number (``low_open``/``high_open`` make the bound strict);
    numbers must be finite. ``choices`` lists the valid values of a ``"choice"``;
    ``convention`` marks a keyword that selects a published convention rather than a
    numeric setting. ``doc`` is one sentence; ``library`` maps each convention value to
    the libraries that use it.
    """

    name: str
    default: Any
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    convention: bool = False
    doc: str = ""
    library: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def range_text(self) -> str:
        """The valid range in words, for error messages (``[0, 1)``, ``one of 'a', 'b'``)."""
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if (self.low_open or self.low is None) else "["
        right = ")" if (self.high_open or self.high is None) else "]"
        text = f"{left}{lo}, {hi}{right}"
        if self.kind == "optional-float":
            text += " or None"
        return text

    def validate(self, rule_name: str, value: Any) -> Any:
        """Check ``value`` against the spec; return it normalised, or raise ``ValueError``."""
        where = f"{rule_name}: {self.name}={value!r}"
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise UsageError(f"{where} is invalid; expected True or False")
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise UsageError(f"{where} is invalid; expected {self.range_text()}")
            return value
        if self.kind == "optional-float" and value is None:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise UsageError(f"{where} is invalid; expected a number in {self.range_text()}")
        v = float(value)
        if not math.isfinite(v):
            raise UsageError(f"{where} is invalid; expected a finite number in {self.range_text()}")
        if self.kind == "int" and v != int(v):
            raise UsageError(f"{where} is invalid; expected a whole number in {self.range_text()}")
        bad_low = self.low is not None and (v < self.low or (self.low_open and v == self.low))
        bad_high = self.high is not None and (v > self.high or (self.high_open and v == self.high))
        if bad_low or bad_high:
            raise UsageError(f"{where} is out of range; expected a value in {self.range_text()}")
        return int(v) if self.kind == "int" else v


def hyper(
    default: Any,
    *,
    kind: str = "float",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] = (),
    doc: str = "",
) -> Any:
    """Declare a hyperparameter field of a rule dataclass (with its valid range)."""
    spec: dict[str, Any] = dict(
        kind=kind,
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        choices=choices,
        doc=doc,
        convention=False,
        library={},
    )
    return dataclasses.field(default=default, metadata={"optcheck": spec})


def convention(default: str, *, choices: Mapping[str, str], doc: str = "") -> Any:
    """Declare a convention keyword: ``choices`` maps each value to the libraries that use it."""
    spec: dict[str, Any] = dict(
        kind="choice",
        low=None,
        high=None,
        low_open=False,
        high_open=False,
        choices=tuple(choices),
        doc=doc,
        convention=True,
        library=dict(choices),
    )
    return dataclasses.field(default=default, metadata={"optcheck": spec})


# ---------------------------------------------------------------------------
# Sub-expression hooks
# ---------------------------------------------------------------------------


def _divide_into(num: Array, den: Array) -> Array:
    """``num / den``, written into ``den`` where the library allows it.

    Only for a ``den`` the caller created itself (a temporary): it saves one
    parameter-sized allocation per division on numpy arrays and torch tensors.
    """
    same = (
        hasattr(num, "shape") and hasattr(den, "shape") and num.shape == den.shape and num.dtype == den.dtype
    )
    if same and isinstance(den, np.ndarray) and isinstance(num, np.ndarray) and den.flags.writeable:
        return np.divide(num, den, out=den)
    torch: Any = sys.modules.get("torch")
    tensors = torch is not None and isinstance(den, torch.Tensor) and isinstance(num, torch.Tensor)
    if same and tensors and not den.requires_grad:
        return torch.div(num, den, out=den)
    return num / den


class Ops:
    """The sub-expressions of the update rules, as overridable methods.

    The default implementations are the correct ones. Contract for every method
    (and every override): return a *new* array (never one of the arguments, which
    may be a user's array or a state entry), and never mutate an argument; a method
    may mutate temporaries it created itself, which is how temporaries are kept few.
    The two exceptions are documented: :meth:`l2` and :meth:`decay` return their
    input unchanged when the coefficient is 0. Rules never mutate what an ``Ops``
    method returns. Diagnosis subclasses this to build the known bugs as mutants of
    the reference rules (``rule.with_ops(MyOps())``).

    The arrays a method receives may be blocks (views) of the user's arrays: large numpy
    arrays are stepped block by block, so a method must compute elementwise (the only
    reductions are Adafactor's, which it does itself). A method that breaks the
    contract (returns its argument, another dtype) still gives a correct pure step, and
    the in-place form falls back to stepping the whole array at once.
    """

    name: ClassVar[str] = "reference"

    def neg(self, g: Array) -> Array:
        """``-g`` (used for ``maximize``)."""
        return -g

    def l2(self, g: Array, p: Array, wd: float) -> Array:
        """Coupled L2 weight decay folded into the gradient: ``g + wd*p`` (``g`` itself when ``wd == 0``)."""
        if wd == 0:
            return g
        out = p * wd
        out += g
        return out

    def decay(self, p: Array, lr: float, wd: float) -> Array:
        """Decoupled, lr-scaled weight decay: ``p * (1 - lr*wd)`` (``p`` itself when ``wd == 0``)."""
        if wd == 0:
            return p
        return p * (1.0 - lr * wd)

    def square(self, g: Array) -> Array:
        """The squared gradient that enters a second moment: ``g*g``."""
        return g * g

    def second_moment_input(self, g: Array, p: Array, wd: float) -> Array:
        """What a second moment averages, given the gradient the step uses (L2 already in ``g``)."""
        return self.square(g)

    def ema(self, avg: Array, x: Array, beta: float) -> Array:
        """Exponential moving average ``beta*avg + (1-beta)*x``."""
        # One array and three passes, no temporary: factor out the larger weight, so that the
        # intermediate never exceeds |avg| + |x| (no overflow that the plain form would not have).
        if beta >= 0.5:
            out = x * ((1.0 - beta) / beta)
            out += avg
            out *= beta
        else:
            out = avg * (beta / (1.0 - beta))
            out += x
            out *= 1.0 - beta
        return out

    def accumulate(self, acc: Array, x: Array) -> Array:
        """A running sum ``acc + x`` (Adagrad)."""
        return acc + x

    def sqrt(self, xp: Any, x: Array) -> Array:
        """The square root of a second moment."""
        return xp.sqrt(x)

    def div_eps(self, num: Array, den: Array, eps: float) -> Array:
        """``num / (den + eps)``: epsilon added to the denominator, outside the root."""
        return _divide_into(num, den + eps)

    def bias_correction(self, beta: float, t: float) -> float:
        """``1 - beta**t``."""
        return 1.0 - float(beta**t)

    def descend(self, p: Array, update: Array, lr: float) -> Array:
        """``p - lr*update``."""
        out = update * (-lr)
        out += p
        return out

    def next_step(self, t: int) -> int:
        """The step counter after this step: ``t + 1``."""
        return t + 1

    def momentum(self, buf: Array, x: Array, mu: float, dampening: float) -> Array:
        """A heavy-ball momentum buffer: ``mu*buf + (1-dampening)*x`` (torch's form)."""
        out = buf * mu
        out += x if dampening == 0 else x * (1.0 - dampening)
        return out

    def momentum_init(self, g: Array, dampening: float) -> Array:
        """torch's first momentum buffer: a copy of ``g`` (no dampening on the first step)."""
        return g * 1.0

    def nesterov(self, g: Array, buf: Array, mu: float) -> Array:
        """Nesterov's look-ahead direction ``g + mu*buf``."""
        out = buf * mu
        out += g
        return out

    def maximum(self, xp: Any, a: Array, b: Array) -> Array:
        """The elementwise maximum ``max(a, b)`` (AMSGrad's running maximum)."""
        return xp.maximum(a, b)

    def variance(self, sq_avg: Array, avg: Array) -> Array:
        """Centered second moment ``sq_avg - avg*avg`` (centered RMSprop)."""
        out = avg * avg
        out *= -1.0
        out += sq_avg
        return out

    def inf_norm(self, xp: Any, u: Array, g: Array, beta: float, eps: float) -> Array:
        """Adamax's running infinity norm ``max(beta*u, |g| + eps)``."""
        a = xp.abs(g)
        a += eps
        return xp.maximum(u * beta, a)

    def sign(self, xp: Any, x: Array) -> Array:
        """The elementwise sign (Lion's update, Rprop's direction)."""
        return xp.sign(x)


DEFAULT_OPS = Ops()
"""The reference sub-expressions (every rule uses them unless built with :meth:`Rule.with_ops`)."""


# ---------------------------------------------------------------------------
# Rule
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """Base class of the reference update rules.

    Subclasses are frozen dataclasses whose fields are the hyperparameters
    (declared with :func:`hyper`) and the conventions (declared with
    :func:`convention`). They set:

    * ``name``: the registry name (``"adam"``);
    * ``array_states``: state entries with the structure of ``params`` (override
      :meth:`array_keys` when they depend on the hyperparameters);
    * ``scalar_states``: state entries that are plain numbers (``"step"``, ...);
    * ``state_roles``: what each state entry is, one of :data:`ROLES`
      (``"second-moment"``, ``"accumulator"``, ``"momentum"``, ``"counter"``, ...);
    * ``tuple_aliases``: torch's tuple arguments accepted by :func:`optcheck.rules.get`
      (``{"betas": ("beta1", "beta2")}``);

    and implement ``_init_leaf`` and ``_step_leaf`` (and ``_scalars`` when the
    step needs per-step numbers shared by every array). ``elementwise`` says that
    ``_step_leaf`` computes each coordinate from the same coordinate of its inputs only
    (no norm, mean or other reduction over the array); such rules are stepped block by
    block on large numpy arrays (set it to ``False`` otherwise, as Adafactor does).

    Two forms of the step share ``_step_leaf``: :meth:`step` (pure, new arrays) and
    :meth:`step_` (in place). ``_step_leaf`` never mutates its inputs; it may be called on
    a block of the arrays, so that the same equations serve both forms.
    """

    name: ClassVar[str] = ""
    elementwise: ClassVar[bool] = True
    array_states: ClassVar[tuple[str, ...]] = ()
    scalar_states: ClassVar[tuple[str, ...]] = ("step",)
    state_roles: ClassVar[Mapping[str, str]] = {}
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    # Not a hyperparameter: the sub-expressions (replaced by diagnosis mutants).
    ops: Ops = dataclasses.field(default=DEFAULT_OPS, repr=False, compare=False, kw_only=True)

    # -- construction -----------------------------------------------------------------

    def __post_init__(self) -> None:
        for spec in self.hyper_specs():
            value = spec.validate(self.name, getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)
        if not isinstance(self.ops, Ops):
            raise UsageTypeError(
                f"{self.name}: ops must be an optcheck.rules.Ops, got {type(self.ops).__name__}"
            )
        self._validate()

    def _validate(self) -> None:
        """Cross-parameter checks (override in subclasses); raise ``ValueError``."""

    @classmethod
    def hyper_specs(cls) -> tuple[Hyper, ...]:
        """The specs of every hyperparameter and convention keyword, in declaration order."""
        out = []
        for f in dataclasses.fields(cls):
            meta = f.metadata.get("optcheck")
            if meta is None:
                continue
            out.append(Hyper(name=f.name, default=f.default, **meta))
        return tuple(out)

    @property
    def hyper(self) -> dict[str, Any]:
        """The hyperparameters and conventions as a dict (``get(rule.name, **rule.hyper)`` rebuilds it)."""
        return {s.name: getattr(self, s.name) for s in self.hyper_specs()}

    def replace(self, **changes: Any) -> Rule:
        """A copy with some hyperparameters changed (validated again; ``betas=`` and the like accepted)."""
        return dataclasses.replace(self, **self.normalise_hyper(changes))

    @classmethod
    def normalise_hyper(cls, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """``hyper`` with torch's tuples split (``betas`` -> ``beta1``, ``beta2``), unknown names refused."""
        out = dict(hyper)
        for alias, fields in cls.tuple_aliases.items():
            if alias not in out:
                continue
            value = out.pop(alias)
            try:
                parts = () if isinstance(value, (str, bytes)) else tuple(value)  # "ab" is not a pair
            except TypeError:
                parts = ()
            if len(parts) != len(fields):
                raise UsageError(
                    f"{cls.name}: {alias}={value!r} is invalid; expected a tuple ({', '.join(fields)})"
                )
            for field, part in zip(fields, parts, strict=True):
                if field in out:
                    raise UsageError(f"{cls.name}: {field} given twice, in {alias}= and as {field}=")
                out[field] = part
        valid = [s.name for s in cls.hyper_specs()]
        unknown = [k for k in out if k not in valid]
        if unknown:
            close = difflib.get_close_matches(unknown[0], [*valid, *cls.tuple_aliases], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"{cls.name}: unknown hyperparameter(s) {unknown}; {cls.name} takes {valid}.{hint}"
            )
        return out

    def with_ops(self, ops: Ops) -> Rule:
        """The same rule computed through other sub-expressions (used to build mutants)."""
        return dataclasses.replace(self, ops=ops)

    # -- the public pure API ---------------------------------------------------------------

    def init(self, params: Tree) -> dict[str, Any]:
        """A fresh state for ``params``: every array entry zero-like (or the rule's initial value)."""
        leaves = _v.check_tree("params", params)  # string keys, real arrays, one array library
        for path, p in leaves:
            _check_float_leaf("params", path, p)
        per_leaf = [self._init_leaf(array_namespace(p), p) for _, p in leaves]
        state: dict[str, Any] = dict(self._init_scalars())
        for key in self.array_keys():
            state[key] = unflatten(params, [s[key] for s in per_leaf])
        return state

    def step(self, params: Tree, grads: Tree, state: Mapping[str, Any]) -> tuple[Tree, dict[str, Any]]:
        """One update: returns ``(new_params, new_state)``; the inputs are never mutated.

        Every array of the result is new (the new parameters and each new state array);
        nothing in ``params``, ``grads`` or ``state`` is written. :meth:`step_` computes the
        same numbers in place.
        """
        return self._run(params, grads, state, in_place=False)

    def step_(self, params: Tree, grads: Tree, state: dict[str, Any]) -> tuple[Tree, dict[str, Any]]:
        """One update *in place*: writes the new values into ``params``' and ``state``'s arrays.

        The arrays of ``params`` and the array entries of ``state`` are overwritten with the
        values :meth:`step` would return (bit for bit: the same equations, through the same
        :class:`Ops` hooks); ``state``'s numbers (``step``, ...) are replaced in the dict.
        ``grads`` is only read. Returns ``(params, state)``, the very objects passed, so that
        ``params, state = rule.step_(params, grads, state)`` reads like the pure form.

        Use it where the old values are not needed afterwards: on large contiguous numpy
        arrays it allocates no parameter-sized array (the pure form allocates its outputs);
        elsewhere (torch tensors, strided arrays, Adafactor's tensors of 3 or more dimensions)
        it computes new arrays and copies them in. If the step raises, arrays already
        written keep their new values. ``state`` must
        be a mutable mapping (a ``dict``), every array writeable, and no two of the arrays
        written may share memory (``UsageError`` naming them otherwise).

        Examples:
            >>> import numpy as np, optcheck
            >>> rule = optcheck.rules.get("sgd", lr=0.1)
            >>> p = np.array([1.0, 2.0])
            >>> state = rule.init(p)
            >>> _ = rule.step_(p, np.array([1.0, -1.0]), state)
            >>> p, state["step"]
            (array([0.9, 2.1]), 1)
        """
        if type(self).step is not Rule.step:
            # a rule with its own pure step (a wrapper rule): compute purely, then write back
            _check_mutable_state(self.name, state)
            _check_writable(self.name, params, state, self.array_keys())
            new_p, new_s = self.step(params, grads, state)
            return _write_back(params, new_p, state, new_s, self.array_keys())
        return self._run(params, grads, state, in_place=True)

    def _run(
        self, params: Tree, grads: Tree, state: Mapping[str, Any], *, in_place: bool
    ) -> tuple[Tree, dict[str, Any]]:
        rows, scalars = self._check(params, grads, state)
        keys = self.array_keys()
        if in_place:
            _check_mutable_state(self.name, state)
            _check_writable(self.name, params, state, keys)
        t = self.ops.next_step(scalars["step"])
        scal = self._scalars(scalars, t)
        new_p: list[Any] = []
        per_leaf: list[dict[str, Any]] = []
        # NaN and inf are not errors here (the invariant checkers report them): no numpy warnings
        with np.errstate(all="ignore"):
            for xp, p, g, s in rows:
                p2, s2 = self._leaf(xp, p, g, s, scal, in_place)
                new_p.append(p2)
                per_leaf.append(s2)
        new_scalars = {k: v for k, v in scal.items() if k in self.scalar_states}
        new_scalars["step"] = t
        if in_place:
            assert isinstance(state, MutableMapping)
            state.update(new_scalars)
            return params, state  # type: ignore[return-value]
        new_state: dict[str, Any] = dict(new_scalars)
        for key in keys:
            new_state[key] = unflatten(params, [s[key] for s in per_leaf])
        return unflatten(params, new_p), new_state

    def _leaf(
        self, xp: Any, p: Array, g: Array, s: dict[str, Array], c: Mapping[str, Any], in_place: bool
    ) -> tuple[Array, dict[str, Array]]:
        """One parameter's step: fresh outputs (``in_place=False``) or written into ``p`` and ``s``.

        Large contiguous numpy arrays of an elementwise rule are stepped in blocks of
        :data:`CHUNK_BYTES` per array, so that the temporaries the :class:`Ops` hooks make
        stay in the CPU cache and are never parameter-sized; each block's results are
        written straight into the outputs (or, in place, into ``p`` and ``s``). Every
        element goes through the same operations either way, so blocking changes no bit.
        """
        n = _block_length(self, p, g, s)
        if n:
            done = self._leaf_blocked(p, g, s, c, in_place, n)
            if done is not None:
                return done
        p2, s2 = self._step_leaf(xp, p, g, s, c)
        p2 = _as_array(p2)
        s2 = {k: _as_array(v) for k, v in s2.items()}
        if in_place:
            _assign_all(self.name, [(p, p2), *((s[k], s2[k]) for k in s)])
            return p, s
        # the pure form returns new arrays: one that is an input (a hook that returned its
        # argument) is copied, so that the caller never holds an alias of its own input
        inputs = (p, g, *s.values())
        return _fresh(xp, p2, inputs), {k: _fresh(xp, v, inputs) for k, v in s2.items()}

    def _leaf_blocked(
        self, p: Array, g: Array, s: dict[str, Array], c: Mapping[str, Any], in_place: bool, n: int
    ) -> tuple[Array, dict[str, Array]] | None:
        """:meth:`_leaf` block by block; ``None`` (nothing written) when the hooks' results do not fit."""
        if in_place:
            out_p, out_s = p, s
        else:
            out_p, *rest = empty_like_all([p, *s.values()])
            out_s = dict(zip(s, rest, strict=True))
        fp, fg = p.reshape(-1), g.reshape(-1)
        fs = {k: v.reshape(-1) for k, v in s.items()}
        dp = out_p.reshape(-1)
        ds = {k: v.reshape(-1) for k, v in out_s.items()}
        size = fp.shape[0]
        for i in range(0, size, n):
            j = min(i + n, size)
            p2, s2 = self._step_leaf(np, fp[i:j], fg[i:j], {k: v[i:j] for k, v in fs.items()}, c)
            pairs = [(dp[i:j], p2), *((ds[k][i:j], s2.get(k)) for k in ds)]
            if i == 0 and (set(s2) != set(ds) or not all(_fits(d, x) for d, x in pairs)):
                # a hook returned something else than one array per output (another dtype,
                # shape or type): the whole array is stepped at once instead
                return None
            _assign_all(self.name, pairs)
        return out_p, out_s

    # -- hooks for subclasses --------------------------------------------------------------

    def array_keys(self) -> tuple[str, ...]:
        """The state entries that hold arrays with the structure of ``params``."""
        return self.array_states

    def phase_steps(self) -> int:
        """The last step at which the rule's update changes form (0: the same form from step 1).

        RAdam's first rectified step, for instance: an audit shorter than this never sees the
        rule's later phase, so the audit runs a few steps past it.
        """
        return 0

    def update_bound(self, t: int) -> tuple[float, float] | None:
        """A bound on one step's move of each coordinate: ``|Δp| <= a + b·|p|`` at step ``t`` (from 1).

        Returns ``(a, b)`` (``b`` covers decoupled weight decay), or ``None`` when the rule
        has no such bound. It must hold for every gradient sequence when the state was built
        by this rule from :meth:`init`; the ``update-too-large`` invariant checks it.
        """
        return None

    def _init_scalars(self) -> dict[str, Any]:
        return {"step": 0}

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        """Numbers shared by every array for step ``t`` (new scalar states included).

        ``state`` holds the validated scalar states (``step`` as an int, the others as floats).
        """
        return {"step": t}

    def _init_leaf(self, xp: Any, p: Array) -> dict[str, Array]:
        return {k: xp.zeros_like(p) for k in self.array_keys()}

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        raise NotImplementedError

    def _state_leaf_shape(self, key: str, p: Array) -> tuple[int, ...] | None:
        """The expected shape of state entry ``key`` for parameter ``p``.

        ``None`` means the entry does not apply to this parameter (Adafactor's factored
        ``row_var``/``col_var`` for a vector): the state then holds ``None`` at that leaf.
        """
        return tuple(p.shape)

    # -- validation ------------------------------------------------------------------------

    def _check(
        self, params: Tree, grads: Tree, state: Mapping[str, Any]
    ) -> tuple[list[tuple[Any, Array, Array, dict[str, Array]]], dict[str, Any]]:
        """Validate the inputs; returns ``(xp, p, g, state leaves)`` per parameter, and the scalar states."""
        if not isinstance(state, Mapping):
            raise UsageTypeError(
                f"{self.name}: state must be a dict (from rule.init(params)), got {type(state).__name__}"
            )
        expected = set(self.scalar_states) | set(self.array_keys())
        missing = sorted(expected - set(state))
        if missing:
            raise UsageError(
                f"{self.name}: state is missing {missing}; a {self.name} state has the keys "
                f"{sorted(expected)} (rule.init(params) builds one)"
            )
        extra = sorted(set(state) - expected)
        if extra:
            raise UsageError(
                f"{self.name}: state has unexpected key(s) {extra}; a {self.name} state has the keys "
                f"{sorted(expected)}"
            )
        scalars: dict[str, Any] = {"step": _as_int_step(state["step"])}
        for key in self.scalar_states:
            if key != "step":
                scalars[key] = _as_float_state(key, state[key])
        trees: dict[str, Tree] = {"params": params, "grads": grads}
        for key in self.array_keys():
            trees[f"state[{key!r}]"] = state[key]
        out = []
        first: tuple[Any, Path] | None = None
        for path, leaves in zip_trees(trees):
            p, g = leaves[0], leaves[1]
            _check_float_leaf("params", path, p)
            _check_float_leaf("grads", path, g)
            if first is None:
                first = (type(p), path)
            elif type(p) is not first[0]:
                _v.check_same_namespace(
                    {path_str("params", first[1]): _leaf_at(params, first[1]), path_str("params", path): p}
                )
            if tuple(g.shape) != tuple(p.shape):
                raise UsageError(
                    f"{path_str('grads', path)} has shape {tuple(g.shape)} but "
                    f"{path_str('params', path)} has shape {tuple(p.shape)}; grads must have the "
                    "shape of the parameter they belong to"
                )
            xp = _namespace_of_both("grads", g, "params", p, path)
            if g.dtype != p.dtype:
                raise UsageTypeError(
                    f"{path_str('grads', path)} has dtype {g.dtype} but {path_str('params', path)} "
                    f"has dtype {p.dtype}; cast the gradient to the parameter's dtype"
                )
            s: dict[str, Array] = {}
            for key, leaf in zip(self.array_keys(), leaves[2:], strict=True):
                s[key] = leaf
                want = self._state_leaf_shape(key, p)
                if (
                    want is not None
                    and type(leaf) is type(p)
                    and tuple(leaf.shape) == want
                    and leaf.dtype == p.dtype
                ):
                    continue  # the usual case, checked cheaply
                name = path_str(f"state[{key!r}]", path)
                if want is None:
                    if leaf is not None:
                        raise UsageError(
                            f"{name} is {describe(leaf)} but {self.name} keeps no {key!r} for "
                            f"{path_str('params', path)} (shape {tuple(p.shape)}); expected None there"
                        )
                    continue
                if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                    raise UsageTypeError(f"{name} is {describe(leaf)}; expected an array of shape {want}")
                if tuple(leaf.shape) != want:
                    raise UsageError(
                        f"{name} has shape {tuple(leaf.shape)} but {path_str('params', path)} has "
                        f"shape {tuple(p.shape)}; expected state shape {want}"
                    )
                _namespace_of_both(f"state[{key!r}]", leaf, "params", p, path)
                if leaf.dtype != p.dtype:
                    raise UsageTypeError(
                        f"{name} has dtype {leaf.dtype} but {path_str('params', path)} has dtype "
                        f"{p.dtype}; state arrays must have the parameter's dtype"
                    )
            out.append((xp, p, g, s))
        return out, scalars


CHUNK_BYTES = 1 << 17
"""The block size (bytes per array) in which large numpy arrays are stepped (see :meth:`Rule.step`)."""


_HUGEPAGE_LOCK = threading.Lock()


def empty_like_all(arrays: list[Any]) -> list[Any]:
    """``np.empty_like`` of each array (``None`` stays ``None``), without huge-page advice.

    numpy advises the kernel to back arrays of 4 MiB and more with transparent huge pages.
    A pure step writes every output into fresh memory, so each output costs its page
    faults; on the virtual machines measured for issue 17, faulting in 2 MiB pages took
    about 2.4 times the CPU time of 4 KiB pages (and far more wall time under load), so
    the outputs are allocated with the advice switched off for the duration of the
    allocation (numpy's ``_set_madvise_hugepage``, under a lock, restored at once; where
    numpy lacks it, nothing changes). The arrays are ordinary numpy arrays.
    """
    big = any(x is not None and x.nbytes >= 1 << 22 for x in arrays)
    ma = sys.modules.get("numpy._core.multiarray") or sys.modules.get("numpy.core.multiarray")
    toggle = getattr(ma, "_set_madvise_hugepage", None) if big else None
    if toggle is None:
        return [None if x is None else np.empty_like(x) for x in arrays]
    with _HUGEPAGE_LOCK:
        before = toggle(False)
        try:
            return [None if x is None else np.empty_like(x) for x in arrays]
        finally:
            toggle(before)


def _block_length(rule: Rule, p: Any, g: Any, s: Mapping[str, Any]) -> int:
    """Entries per block when ``p`` is stepped block by block, else 0 (the whole array at once)."""
    if not rule.elementwise or type(p) is not np.ndarray or type(g) is not np.ndarray:
        return 0
    if p.nbytes < 2 * CHUNK_BYTES or not (p.flags.c_contiguous and g.flags.c_contiguous):
        return 0
    for v in s.values():
        if type(v) is not np.ndarray or not v.flags.c_contiguous or v.shape != p.shape:
            return 0
    return max(1, CHUNK_BYTES // p.itemsize)


def _fits(dst: np.ndarray, x: Any) -> bool:
    return type(x) is np.ndarray and x.shape == dst.shape and x.dtype == dst.dtype


def _may_alias(x: Any, others: Any) -> bool:
    """Whether ``x`` may share memory with one of ``others`` (cheaply: most results own their memory).

    A numpy array that owns its memory (``base is None``, as every fresh result of an
    operation does) shares it with no other array, unless it *is* one of them; a view is
    checked by address. torch tensors are compared by storage; other arrays by identity.
    """
    if any(x is o for o in others):
        return True
    if isinstance(x, np.ndarray):
        if x.base is None:
            return False
        return any(isinstance(o, np.ndarray) and np.may_share_memory(x, o) for o in others)
    torch: Any = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        try:
            ptr = x.untyped_storage().data_ptr()
            return any(
                isinstance(o, torch.Tensor) and o.untyped_storage().data_ptr() == ptr and x.numel() > 0
                for o in others
            )
        except (RuntimeError, NotImplementedError):  # pragma: no cover - tensors without storage
            return False
    return False


def _copy(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.copy()
    torch: Any = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.clone()
    return array_namespace(x).asarray(x, copy=True)


def _fresh(xp: Any, x: Any, inputs: tuple[Any, ...]) -> Any:
    """``x``, or a copy of it when it shares memory with one of ``inputs``."""
    if x is None:
        return None
    return _copy(x) if _may_alias(x, [i for i in inputs if i is not None]) else x


def _assign_all(name: str, pairs: list[tuple[Any, Any]]) -> None:
    """Write each ``src`` into its ``dst``, every ``src`` read before any ``dst`` is written."""
    dsts = [d for d, _ in pairs]
    todo = []
    for dst, src in pairs:
        if src is dst or (dst is None and src is None):
            continue
        if dst is None or src is None or tuple(src.shape) != tuple(dst.shape):
            got = "None" if src is None else f"shape {tuple(src.shape)}"
            want = "None" if dst is None else f"shape {tuple(dst.shape)}"
            raise UsageError(
                f"{name}: the step produced an array of {got} where the in-place form must store "
                f"{want}; use rule.step, which returns new arrays"
            )
        if _may_alias(src, dsts):
            src = _copy(src)  # a result that aliases a destination: read it before writing
        todo.append((dst, src))
    for dst, src in todo:
        if isinstance(dst, np.ndarray):
            np.copyto(dst, src)
            continue
        torch: Any = sys.modules.get("torch")
        if torch is not None and isinstance(dst, torch.Tensor):
            with torch.no_grad():
                dst.copy_(src)
            continue
        dst[...] = src


def _check_mutable_state(name: str, state: Any) -> None:
    if not isinstance(state, MutableMapping):
        raise UsageTypeError(
            f"{name}: rule.step_ writes the new state into state, so state must be a dict; got "
            f"{type(state).__name__} (use rule.step, which returns a new state)"
        )


def _byte_bounds(x: np.ndarray) -> tuple[int, int]:
    utils = getattr(np.lib, "array_utils", None)  # numpy >= 2
    fn = utils.byte_bounds if utils is not None else np.byte_bounds  # type: ignore[attr-defined]
    lo, hi = fn(x)
    return int(lo), int(hi)


def _check_writable(name: str, params: Tree, state: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Every array ``step_`` writes is writeable and shares memory with no other one it writes."""
    trees: list[tuple[str, Tree]] = [("params", params), *((f"state[{k!r}]", state.get(k)) for k in keys)]
    arrays: list[tuple[str, Any]] = []
    for label, tree in trees:
        for path, x in flatten(tree):
            if x is None:
                continue
            where = path_str(label, path)
            if isinstance(x, np.generic):
                raise UsageError(
                    f"{where} is a numpy scalar ({type(x).__name__}), which cannot be changed in place; "
                    "rule.step_ needs arrays (np.asarray(x) makes a 0-d one), or use rule.step"
                )
            if isinstance(x, np.ndarray) and not x.flags.writeable:
                raise UsageError(
                    f"{where} is a read-only numpy array; rule.step_ writes the new values into it "
                    "(pass a writeable array, e.g. a copy, or use rule.step)"
                )
            arrays.append((where, x))
    bounds = []
    for where, x in arrays:
        if isinstance(x, np.ndarray):
            lo, hi = _byte_bounds(x)
            bounds.append((lo, hi, where, x))
    bounds.sort(key=lambda b: b[0])
    active: list[tuple[int, int, str, np.ndarray]] = []
    for b in bounds:
        active = [a for a in active if a[1] > b[0]]
        for a in active:
            if a[3].size and b[3].size and np.shares_memory(a[3], b[3]):
                raise UsageError(
                    f"{a[2]} and {b[2]} share memory; rule.step_ writes both, so one would overwrite "
                    "the other (give each its own array, or use rule.step)"
                )
        active.append(b)
    seen: dict[int, str] = {}
    for where, x in arrays:
        if not isinstance(x, np.ndarray):
            if id(x) in seen:
                raise UsageError(
                    f"{seen[id(x)]} and {where} are the same array; rule.step_ writes both, so one "
                    "would overwrite the other (give each its own array, or use rule.step)"
                )
            seen[id(x)] = where


def _write_back(
    params: Tree, new_p: Tree, state: dict[str, Any], new_s: Mapping[str, Any], keys: tuple[str, ...]
) -> tuple[Tree, dict[str, Any]]:
    """Copy a pure step's results into ``params`` and ``state`` (the in-place form of a wrapper rule)."""
    pairs = [(d, x) for (_, d), (_, x) in zip(flatten(params), flatten(new_p), strict=True)]
    for k in keys:
        pairs += [(d, x) for (_, d), (_, x) in zip(flatten(state[k]), flatten(new_s[k]), strict=True)]
    _assign_all("step_", pairs)
    for k, v in new_s.items():
        if k not in keys:
            state[k] = v
    return params, state


def _namespace_of_both(name: str, x: Any, ref_name: str, ref: Any, path: Path) -> Any:
    """The array namespace of ``x`` and ``ref``; ``TypeError`` naming both when they differ."""
    try:
        return array_namespace(x, ref)
    except TypeError:
        raise UsageTypeError(
            f"{path_str(name, path)} is a {type(x).__module__}.{type(x).__name__} but "
            f"{path_str(ref_name, path)} is a {type(ref).__module__}.{type(ref).__name__}; params, grads "
            "and state must come from the same array library"
        ) from None


def _as_array(x: Any) -> Any:
    """numpy turns 0-d results into scalars (``np.float64``); give them back as 0-d arrays."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def _as_int_step(step: Any) -> int:
    if isinstance(step, (str, bytes, bool, np.bool_)):
        raise UsageTypeError(f"state['step'] must be a whole number >= 0, got {step!r}")
    try:
        value = float(step)
    except (TypeError, ValueError):
        raise UsageTypeError(f"state['step'] must be a whole number >= 0, got {step!r}") from None
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise UsageError(f"state['step'] must be a whole number >= 0, got {step!r}")
    return int(value)


def _as_float_state(key: str, value: Any) -> float:
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise UsageTypeError(f"state[{key!r}] must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageTypeError(f"state[{key!r}] must be a number, got {describe(value)}: {value!r}") from None


def _leaf_at(tree: Tree, path: Path) -> Any:
    """The leaf of ``tree`` at ``path``."""
    for k in path:
        tree = tree[k]
    return tree


def _check_float_leaf(name: str, path: Path, x: Any) -> None:
    if type(x) is np.ndarray and x.dtype.kind == "f":
        return  # the usual case, checked cheaply
    where = path_str(name, path)
    _v.check_array(where, x)  # np.matrix, masked arrays, object dtype, lists: one named error
    if not (hasattr(x, "shape") and hasattr(x, "dtype")) or isinstance(x, type):
        raise UsageTypeError(f"{where} is {describe(x)}; expected an array (numpy array or torch tensor)")
    try:
        xp = array_namespace(x)
        ok = xp.isdtype(x.dtype, "real floating")
    except TypeError as e:
        raise UsageTypeError(f"{where} is {describe(x)}, which is not an array-API array ({e})") from None
    if not ok:
        raise UsageTypeError(
            f"{where} has dtype {x.dtype}; update rules need floating-point arrays "
            f"(convert with x.astype(np.float64) or tensor.double())"
        )
