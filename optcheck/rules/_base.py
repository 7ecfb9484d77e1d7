"""The :class:`Rule` base class, hyperparameter specs and the sub-expression hooks.

A rule is an immutable value (a frozen dataclass) holding its hyperparameters and
conventions. ``rule.init(params)`` builds a state; ``rule.step(params, grads, state)``
returns ``(new_params, new_state)`` and never mutates its inputs.

Every rule is written once, against the array API (``array_api_compat``), so the
same code serves numpy arrays, ``array_api_strict`` arrays and torch tensors.
The arithmetic that bugs in the wild get wrong (the square in a second moment,
the square root, where epsilon goes, bias correction, the running average, the
weight-decay term, the descent sign) is written through an :class:`Ops` object.
Diagnosis builds a *mutant* of a rule by swapping in an ``Ops`` with one
sub-expression replaced; the rule's equations are never copied.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from array_api_compat import array_namespace

from .._tree import Path, Tree, describe, flatten, path_str, unflatten, zip_trees

__all__ = [
    "DEFAULT_OPS",
    "Hyper",
    "Ops",
    "Rule",
    "convention",
    "hyper",
]

Array = Any


# ---------------------------------------------------------------------------
# Hyperparameter specs
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hyper:
    """The spec of one hyperparameter or convention keyword of a rule.

    ``kind`` is ``"float"``, ``"int"``, ``"bool"``, ``"choice"`` or ``"optional-float"``.
    ``low``/``high`` bound a number (``low_open``/``high_open`` make the bound strict).
    ``choices`` lists the valid values of a ``"choice"``; ``convention`` marks a
    keyword that selects a published convention rather than a numeric setting.
    ``doc`` is one sentence; ``library`` names who uses each convention value.
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
            if not isinstance(value, bool):
                raise ValueError(f"{where} is invalid; expected True or False")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{where} is invalid; expected {self.range_text()}")
            return value
        if self.kind == "optional-float" and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} is invalid; expected a number in {self.range_text()}")
        if self.kind == "int" and float(value) != int(value):
            raise ValueError(f"{where} is invalid; expected a whole number in {self.range_text()}")
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"{where} is invalid; expected a number in {self.range_text()}, got NaN")
        bad_low = self.low is not None and (v < self.low or (self.low_open and v == self.low))
        bad_high = self.high is not None and (v > self.high or (self.high_open and v == self.high))
        if bad_low or bad_high:
            raise ValueError(f"{where} is out of range; expected a value in {self.range_text()}")
        return int(value) if self.kind == "int" else v


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
    spec = dict(
        kind=kind, low=low, high=high, low_open=low_open, high_open=high_open,
        choices=choices, doc=doc, convention=False, library={},
    )
    return dataclasses.field(default=default, metadata={"optcheck": spec})


def convention(default: str, *, choices: Mapping[str, str], doc: str = "") -> Any:
    """Declare a convention keyword: ``choices`` maps each value to the libraries that use it."""
    spec = dict(
        kind="choice", low=None, high=None, low_open=False, high_open=False,
        choices=tuple(choices), doc=doc, convention=True, library=dict(choices),
    )
    return dataclasses.field(default=default, metadata={"optcheck": spec})


# ---------------------------------------------------------------------------
# Sub-expression hooks
# ---------------------------------------------------------------------------


class Ops:
    """The sub-expressions of the update rules, as overridable methods.

    The default implementations are the correct ones. Each method creates a new
    array for its result (it may reuse the temporaries it creates itself, never
    its arguments), so rules stay pure. Diagnosis subclasses this to build the
    known bugs as mutants of the reference rules.
    """

    name: ClassVar[str] = "reference"

    def neg(self, g: Array) -> Array:
        """``-g`` (used for ``maximize``)."""
        return -g

    def l2(self, g: Array, p: Array, wd: float) -> Array:
        """Coupled L2 weight decay folded into the gradient: ``g + wd*p``."""
        if wd == 0:
            return g
        out = p * wd
        out += g
        return out

    def decay(self, p: Array, lr: float, wd: float) -> Array:
        """Decoupled, lr-scaled weight decay: ``p * (1 - lr*wd)``."""
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
        out = avg * beta
        out += x * (1.0 - beta)
        return out

    def accumulate(self, acc: Array, x: Array) -> Array:
        """A running sum ``acc + x`` (Adagrad)."""
        return acc + x

    def sqrt(self, xp: Any, x: Array) -> Array:
        """The square root of a second moment."""
        return xp.sqrt(x)

    def div_eps(self, num: Array, den: Array, eps: float) -> Array:
        """``num / (den + eps)``: epsilon added to the denominator, outside the root."""
        d = den + eps
        return num / d

    def bias_correction(self, beta: float, t: float) -> float:
        """``1 - beta**t``."""
        return 1.0 - beta**t

    def descend(self, p: Array, update: Array, lr: float) -> Array:
        """``p - lr*update``."""
        out = update * lr
        return p - out

    def next_step(self, t: int) -> int:
        """The step counter after this step: ``t + 1``."""
        return t + 1


DEFAULT_OPS = Ops()


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
    * ``state_roles``: what each state entry is, for invariant checking:
      ``"first-moment"``, ``"second-moment"``, ``"max-second-moment"``,
      ``"accumulator"`` (never decreases), ``"momentum"``, ``"counter"``,
      ``"average"``, ``"other"``;

    and implement ``_init_leaf`` and ``_step_leaf`` (and ``_scalars`` when the
    step needs per-step numbers shared by every array).
    """

    name: ClassVar[str] = ""
    array_states: ClassVar[tuple[str, ...]] = ()
    scalar_states: ClassVar[tuple[str, ...]] = ("step",)
    state_roles: ClassVar[Mapping[str, str]] = {}

    # Not a hyperparameter: the sub-expressions (replaced by diagnosis mutants).
    ops: Ops = dataclasses.field(default=DEFAULT_OPS, repr=False, compare=False, kw_only=True)

    # -- construction -----------------------------------------------------------------

    def __post_init__(self) -> None:
        for spec in self.hyper_specs():
            value = spec.validate(self.name, getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)
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
        """A copy with some hyperparameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_ops(self, ops: Ops) -> Rule:
        """The same rule computed through other sub-expressions (used to build mutants)."""
        return dataclasses.replace(self, ops=ops)

    # -- the public pure API ---------------------------------------------------------------

    def init(self, params: Tree) -> dict[str, Any]:
        """A fresh state for ``params``: every array entry zero-like (or the rule's initial value)."""
        leaves = flatten(params)
        for path, p in leaves:
            _check_float_leaf("params", path, p)
        per_leaf = [self._init_leaf(array_namespace(p), p) for _, p in leaves]
        state: dict[str, Any] = {k: v for k, v in self._init_scalars().items()}
        for key in self.array_keys():
            state[key] = unflatten(params, [s[key] for s in per_leaf])
        return state

    def step(self, params: Tree, grads: Tree, state: Mapping[str, Any]) -> tuple[Tree, dict[str, Any]]:
        """One update: returns ``(new_params, new_state)``; the inputs are never mutated."""
        rows = self._check(params, grads, state)
        t = self.ops.next_step(_as_int_step(state["step"]))
        scal = self._scalars(state, t)
        new_p: list[Any] = []
        per_leaf: list[dict[str, Any]] = []
        for _, p, g, s in rows:
            xp = array_namespace(p, g)
            p2, s2 = self._step_leaf(xp, p, g, s, scal)
            new_p.append(p2)
            per_leaf.append(s2)
        new_state: dict[str, Any] = {k: v for k, v in scal.items() if k in self.scalar_states}
        new_state["step"] = t
        for key in self.array_keys():
            new_state[key] = unflatten(params, [s[key] for s in per_leaf])
        return unflatten(params, new_p), new_state

    # -- hooks for subclasses --------------------------------------------------------------

    def array_keys(self) -> tuple[str, ...]:
        """The state entries that hold arrays with the structure of ``params``."""
        return self.array_states

    def _init_scalars(self) -> dict[str, Any]:
        return {"step": 0}

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        """Numbers shared by every array for step ``t`` (new scalar states included)."""
        return {"step": t}

    def _init_leaf(self, xp: Any, p: Array) -> dict[str, Array]:
        return {k: xp.zeros_like(p) for k in self.array_keys()}

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        raise NotImplementedError

    def _state_leaf_shape(self, key: str, p: Array) -> tuple[int, ...] | None:
        """The expected shape of state entry ``key`` for parameter ``p`` (None: no check)."""
        return tuple(p.shape)

    # -- validation ------------------------------------------------------------------------

    def _check(
        self, params: Tree, grads: Tree, state: Mapping[str, Any]
    ) -> list[tuple[Path, Array, Array, dict[str, Array]]]:
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{self.name}: state must be a dict (from rule.init(params)), got {type(state).__name__}"
            )
        expected = set(self.scalar_states) | set(self.array_keys())
        missing = sorted(expected - set(state))
        if missing:
            raise ValueError(
                f"{self.name}: state is missing {missing}; a {self.name} state has the keys "
                f"{sorted(expected)} (rule.init(params) builds one)"
            )
        extra = sorted(set(state) - expected)
        if extra:
            raise ValueError(
                f"{self.name}: state has unexpected key(s) {extra}; a {self.name} state has the keys "
                f"{sorted(expected)}"
            )
        trees: dict[str, Tree] = {"params": params, "grads": grads}
        for key in self.array_keys():
            trees[f"state[{key!r}]"] = state[key]
        out = []
        for path, leaves in zip_trees(trees):
            p, g = leaves[0], leaves[1]
            _check_float_leaf("params", path, p)
            _check_float_leaf("grads", path, g)
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(
                    f"{path_str('grads', path)} has shape {tuple(g.shape)} but "
                    f"{path_str('params', path)} has shape {tuple(p.shape)}; grads must have the "
                    "shape of the parameter they belong to"
                )
            if g.dtype != p.dtype:
                raise TypeError(
                    f"{path_str('grads', path)} has dtype {g.dtype} but {path_str('params', path)} "
                    f"has dtype {p.dtype}; cast the gradient to the parameter's dtype"
                )
            s: dict[str, Array] = {}
            for key, leaf in zip(self.array_keys(), leaves[2:]):
                s[key] = leaf
                want = self._state_leaf_shape(key, p)
                if want is None:
                    continue
                name = path_str(f"state[{key!r}]", path)
                if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                    raise TypeError(f"{name} is {describe(leaf)}; expected an array of shape {want}")
                if tuple(leaf.shape) != want:
                    raise ValueError(
                        f"{name} has shape {tuple(leaf.shape)} but {path_str('params', path)} has "
                        f"shape {tuple(p.shape)}; expected state shape {want}"
                    )
                if leaf.dtype != p.dtype:
                    raise TypeError(
                        f"{name} has dtype {leaf.dtype} but {path_str('params', path)} has dtype "
                        f"{p.dtype}; state arrays must have the parameter's dtype"
                    )
            out.append((path, p, g, s))
        return out


def _as_int_step(step: Any) -> int:
    try:
        value = float(step)
    except (TypeError, ValueError):
        raise TypeError(f"state['step'] must be a whole number >= 0, got {step!r}") from None
    if value != int(value) or value < 0:
        raise ValueError(f"state['step'] must be a whole number >= 0, got {step!r}")
    return int(value)


def _check_float_leaf(name: str, path: Path, x: Any) -> None:
    where = path_str(name, path)
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{where} is {describe(x)}; expected an array (numpy array or torch tensor)")
    try:
        xp = array_namespace(x)
        ok = xp.isdtype(x.dtype, "real floating")
    except TypeError as e:
        raise TypeError(f"{where} is {describe(x)}, which is not an array-API array ({e})") from None
    if not ok:
        raise TypeError(
            f"{where} has dtype {x.dtype}; update rules need floating-point arrays "
            f"(convert with x.astype(np.float64) or tensor.double())"
        )
