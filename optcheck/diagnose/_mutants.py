"""Mutants: the reference rules with one sub-expression replaced, a hyperparameter changed, or state mishandled.

A :class:`Variant` describes one concrete way to get a known bug (or a known
convention) *relative to* a reference rule, without copying any equation:

* ``ops``: :class:`~optcheck.rules.Ops` mixins below, each replacing one sub-expression
  hook (the square, the square root, where epsilon goes, the bias correction, ...);
  several mixins compose through the method resolution order (each calls ``super()``
  for the part it leaves alone), so two bugs combine into one mutant;
* ``changes``: hyperparameter or convention-keyword changes (``rule.replace(...)``);
* ``freeze``/``compound``: state handling across calls, built as a pure wrapper rule
  (:class:`StatefulMutant`): a state entry returned unchanged, or written back
  bias-corrected;
* ``no_decay_on_biases``: a parameter-group override (weight decay 0 on biases);
* ``only``: the variant applied to one parameter group (``"biases"``, ``"weights"``) or one
  array (its key path), the reference everywhere else;
* ``clip_norm``: every gradient array clipped to this L2 norm before the step (BertAdam's
  per-tensor clipping), built as a pure wrapper rule (:class:`ClippedGrads`);
* ``compute_dtype``: the whole step computed in another dtype.

Every hook here returns a new array, never one of its arguments: the rules modify
some hook results in place (``den /= ...``), and rules must stay pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .._tree import Path, Tree, flatten, map_tree, path_str
from ..rules import Ops, Rule

Array = Any

__all__ = [
    "BcInverted",
    "BcPower",
    "BcStep",
    "BcWrongBeta",
    "ClippedGrads",
    "EpsBcScaled",
    "EpsOutside",
    "MissingSqrt",
    "NoBiasCorrection",
    "NonSquareOnRawSquare",
    "NonSquareOnStepSquare",
    "NotSquared",
    "RawInsteadOfAverage",
    "StatefulMutant",
    "SwapEma",
    "Variant",
    "WdSecondMomentOnly",
    "WdWrongSign",
    "WrongSign",
    "is_bias",
    "realize",
]


# ---------------------------------------------------------------------------------------------
# Ops mixins: one replaced sub-expression each
# ---------------------------------------------------------------------------------------------


class EpsOutside(Ops):
    """``num/den + eps`` instead of ``num/(den + eps)``: epsilon added after the division.

    Where the code adds epsilon decides how the step scales it: ``lr·(m̂/√v̂ + ε)`` adds ε
    after the bias correction of the first moment (``eps_scale_beta``: that decay rate, so
    the ε seen by the rule's ``(lr/bc1)·(m/den + ·)`` is ``ε·bc1``), and
    ``lr·g/√v + ε`` after the learning rate (``eps_after_lr``: the learning rate, ε/lr).
    The bias corrections of the current step are remembered as the rule computes them.
    """

    eps_scale_beta: ClassVar[float | None] = None
    eps_after_lr: ClassVar[float | None] = None

    def bias_correction(self, beta: float, t: float) -> float:
        out = super().bias_correction(beta, t)
        self.__dict__.setdefault("_bc_now", {})[beta] = out
        return out

    def div_eps(self, num: Array, den: Array, eps: float) -> Array:
        out = num / den
        scale = 1.0
        if self.eps_scale_beta is not None:
            scale = float(self.__dict__.get("_bc_now", {}).get(self.eps_scale_beta, 1.0))
        if self.eps_after_lr:
            scale /= self.eps_after_lr
        out += eps * scale
        return out


class NonSquareOnRawSquare(Ops):
    """The L2 term ``λp`` added to the raw squared gradient: ``g² + λp`` (the seed problem).

    The rule passes the gradient the step uses (``g + λp`` under coupled L2); the raw
    gradient is recovered as ``(g + λp) − λp``.
    """

    def second_moment_input(self, g: Array, p: Array, wd: float) -> Array:
        if wd == 0:
            return super().second_moment_input(g, p, wd)
        raw = g - p * wd
        out = super().second_moment_input(raw, p, wd)
        return out + p * wd


class NonSquareOnStepSquare(Ops):
    """The L2 term ``λp`` added on top of the square of the gradient the step uses: ``g² + λp``."""

    def second_moment_input(self, g: Array, p: Array, wd: float) -> Array:
        out = super().second_moment_input(g, p, wd)
        if wd == 0:
            return out
        return out + p * wd


class WdSecondMomentOnly(Ops):
    """The L2 term enters the second moment, ``(g + λp)²``, but the step uses the raw ``g``."""

    def l2(self, g: Array, p: Array, wd: float) -> Array:
        return g * 1.0

    def second_moment_input(self, g: Array, p: Array, wd: float) -> Array:
        return super().second_moment_input(super().l2(g, p, wd), p, wd)


class WdWrongSign(Ops):
    """Weight decay with the wrong sign: ``g − λp`` and ``p·(1 + lr·λ)``."""

    def l2(self, g: Array, p: Array, wd: float) -> Array:
        return super().l2(g, p, -wd)

    def decay(self, p: Array, lr: float, wd: float) -> Array:
        return super().decay(p, lr, -wd)


class NotSquared(Ops):
    """The gradient itself (``not_squared="g"``) or its magnitude (``"abs"``) accumulated instead of ``g²``."""

    not_squared: ClassVar[str] = "g"

    def square(self, g: Array) -> Array:
        return abs(g) if self.not_squared == "abs" else g * 1.0


class MissingSqrt(Ops):
    """The second moment used without its square root: divides by ``v`` instead of ``√v``."""

    def sqrt(self, xp: Any, x: Array) -> Array:
        return x * 1.0


class SwapEma(Ops):
    """``(1−β)·avg + β·x`` instead of ``β·avg + (1−β)·x`` for the decay rates in ``swap_betas`` (all when None)."""

    swap_betas: ClassVar[frozenset[float] | None] = None

    def ema(self, avg: Array, x: Array, beta: float) -> Array:
        if self.swap_betas is None or beta in self.swap_betas:
            beta = 1.0 - beta
        return super().ema(avg, x, beta)


class RawInsteadOfAverage(Ops):
    """The raw input used where the running average with a decay rate in ``raw_betas`` belongs."""

    raw_betas: ClassVar[frozenset[float]] = frozenset()

    def ema(self, avg: Array, x: Array, beta: float) -> Array:
        if beta in self.raw_betas:
            return x * 1.0
        return super().ema(avg, x, beta)


class NoBiasCorrection(Ops):
    """No bias correction (``1``) for the decay rates in ``bc_skip`` (all when None)."""

    bc_skip: ClassVar[frozenset[float] | None] = None

    def bias_correction(self, beta: float, t: float) -> float:
        if self.bc_skip is None or beta in self.bc_skip:
            return 1.0
        return super().bias_correction(beta, t)


class BcStep(Ops):
    """Bias correction computed with the wrong step: ``t−1`` (counter from 0), frozen at ``bc_frozen_at``
    (``min(t, k)``), ``t+1``, ``2t``; only for the decay rates in ``step_betas`` (all when None)."""

    bc_step: ClassVar[str] = "zero"
    bc_frozen_at: ClassVar[int] = 1
    step_betas: ClassVar[frozenset[float] | None] = None

    def bias_correction(self, beta: float, t: float) -> float:
        if self.step_betas is not None and beta not in self.step_betas:
            return super().bias_correction(beta, t)
        shifted = {
            "zero": t - 1,
            "frozen": min(t, self.bc_frozen_at),
            "ahead": t + 1,
            "twice": 2 * t,
        }[self.bc_step]
        return super().bias_correction(beta, shifted)


class BcWrongBeta(Ops):
    """A bias correction computed with another decay rate: ``1 − β1^t`` for the second moment.

    ``bc_beta_map``: pairs ``(rate, rate used instead)``.
    """

    bc_beta_map: ClassVar[tuple[tuple[float, float], ...]] = ()

    def bias_correction(self, beta: float, t: float) -> float:
        return super().bias_correction(dict(self.bc_beta_map).get(beta, beta), t)


class EpsBcScaled(Ops):
    """ε scaled by the bias correction ``bc`` of ``eps_bc_beta`` where ``√bc`` is meant.

    Written as ``(lr·√bc2/bc1)·m/(√v + ε·bc2)``, which is the reference's ``m̂/(√v̂ + ε)`` with
    ε replaced by ``ε·√bc2``.
    """

    eps_bc_beta: ClassVar[float] = 0.999

    def bias_correction(self, beta: float, t: float) -> float:
        out = super().bias_correction(beta, t)
        self.__dict__.setdefault("_bc_now", {})[beta] = out
        return out

    def div_eps(self, num: Array, den: Array, eps: float) -> Array:
        bc = float(self.__dict__.get("_bc_now", {}).get(self.eps_bc_beta, 1.0))
        return super().div_eps(num, den, eps * bc**0.5 if bc > 0 else eps)


class BcPower(Ops):
    """Bias correction with the power in the wrong place: ``(1−β)^t`` (``"pow"``) or ``1−(1−β)^t`` (``"complement"``).

    Only for the decay rates in ``power_betas`` (all when None).
    """

    bc_power: ClassVar[str] = "pow"
    power_betas: ClassVar[frozenset[float] | None] = None

    def bias_correction(self, beta: float, t: float) -> float:
        if self.power_betas is not None and beta not in self.power_betas:
            return super().bias_correction(beta, t)
        if self.bc_power == "pow":
            return float((1.0 - beta) ** t)
        return super().bias_correction(1.0 - beta, t)


class BcInverted(Ops):
    """The average multiplied by ``1−β^t`` instead of divided by it (for the decay rates in ``inverted_betas``; all when None)."""

    inverted_betas: ClassVar[frozenset[float] | None] = None

    def bias_correction(self, beta: float, t: float) -> float:
        out = super().bias_correction(beta, t)
        if self.inverted_betas is not None and beta not in self.inverted_betas:
            return out
        return 1.0 / out


class WrongSign(Ops):
    """``p + lr·update``: gradient ascent instead of descent."""

    def descend(self, p: Array, update: Array, lr: float) -> Array:
        return super().descend(p, update, -lr)


_OPS_CLASSES: dict[tuple[type[Ops], ...], type[Ops]] = {}


def _ops_class(mixins: tuple[type[Ops], ...], base: type[Ops]) -> type[Ops]:
    key = (*mixins, base)
    if key not in _OPS_CLASSES:
        name = "+".join(m.__name__ for m in mixins) or base.__name__
        _OPS_CLASSES[key] = type(name, key, {"name": name})
    return _OPS_CLASSES[key]


def make_ops(mixins: tuple[type[Ops], ...], attrs: Mapping[str, Any], base: Ops) -> Ops:
    """An ``Ops`` combining ``mixins`` over ``base``'s class, with the mixins' settings ``attrs``."""
    cls = _ops_class(tuple(mixins), type(base))
    ops = cls()
    for k, v in attrs.items():
        setattr(ops, k, v)
    return ops


# ---------------------------------------------------------------------------------------------
# State handling across calls: a pure wrapper rule
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StatefulMutant(Rule):
    """``inner`` with its state mishandled between calls (pure: the inputs are never mutated).

    * ``freeze``: state entries returned unchanged (a state computed but not carried to the
      next call; ``"step"`` freezes the counter);
    * ``compound``: ``(state key, decay-rate name)`` pairs whose new value is written back
      divided by its bias correction ``1 − β^t`` (the corrected value stored as the average).
    """

    inner: Rule
    freeze: tuple[str, ...] = ()
    compound: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:  # type: ignore[override]
        """The inner rule's name."""
        return self.inner.name

    @property
    def hyper(self) -> dict[str, Any]:
        """The inner rule's hyperparameters."""
        return self.inner.hyper

    def array_keys(self) -> tuple[str, ...]:
        """The inner rule's array state entries."""
        return self.inner.array_keys()

    def replace(self, **changes: Any) -> Rule:
        """The same mishandling around ``inner.replace(**changes)``."""
        return dataclasses.replace(self, inner=self.inner.replace(**changes))

    def with_ops(self, ops: Ops) -> Rule:
        """The same mishandling around ``inner.with_ops(ops)``."""
        return dataclasses.replace(self, inner=self.inner.with_ops(ops))

    def init(self, params: Tree) -> dict[str, Any]:
        """The inner rule's initial state."""
        return self.inner.init(params)

    def step(self, params: Tree, grads: Tree, state: Mapping[str, Any]) -> tuple[Tree, dict[str, Any]]:
        """The inner step, then the frozen entries put back and the compounded ones divided."""
        new_p, new_s = self.inner.step(params, grads, state)
        for key in self.freeze:
            if key in state:
                new_s[key] = state[key]
        t = new_s.get("step", 0)
        for key, beta_name in self.compound:
            bc = self.inner.ops.bias_correction(float(getattr(self.inner, beta_name)), t)
            new_s[key] = map_tree(lambda x, bc=bc: x / bc, new_s[key])
        return new_p, new_s


@dataclasses.dataclass(frozen=True)
class ClippedGrads(Rule):
    """``inner`` with every gradient array clipped to L2 norm ``max_norm`` first (pure).

    BertAdam (``pytorch-pretrained-bert``) clips each parameter's gradient on its own
    (``clip_grad_norm_(p, max_grad_norm)``, 1.0 by default) inside the optimizer step.
    """

    inner: Rule
    max_norm: float = 1.0

    @property
    def name(self) -> str:  # type: ignore[override]
        """The inner rule's name."""
        return self.inner.name

    @property
    def hyper(self) -> dict[str, Any]:
        """The inner rule's hyperparameters."""
        return self.inner.hyper

    def array_keys(self) -> tuple[str, ...]:
        """The inner rule's array state entries."""
        return self.inner.array_keys()

    def replace(self, **changes: Any) -> Rule:
        """The same clipping around ``inner.replace(**changes)``."""
        return dataclasses.replace(self, inner=self.inner.replace(**changes))

    def with_ops(self, ops: Ops) -> Rule:
        """The same clipping around ``inner.with_ops(ops)``."""
        return dataclasses.replace(self, inner=self.inner.with_ops(ops))

    def init(self, params: Tree) -> dict[str, Any]:
        """The inner rule's initial state."""
        return self.inner.init(params)

    def step(self, params: Tree, grads: Tree, state: Mapping[str, Any]) -> tuple[Tree, dict[str, Any]]:
        """The inner step on the clipped gradients."""

        def clip(g: Any) -> Any:
            a = np.asarray(g) if not hasattr(g, "shape") else g
            norm = float(np.sqrt(np.sum(np.square(np.asarray(a, dtype=np.float64)))))
            coef = self.max_norm / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_
            return a * coef if coef < 1.0 else a

        return self.inner.step(params, map_tree(clip, grads), state)


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One concrete way to turn a reference rule into a bug or a convention (see the module docstring).

    ``label`` says what this variant does, in a few words; ``ignore_state`` lists state
    entries that a target with this bug stores differently from the mutant (compared
    on the parameters only).
    """

    label: str
    ops: tuple[type[Ops], ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    changes: tuple[tuple[str, Any], ...] = ()
    freeze: tuple[str, ...] = ()
    compound: tuple[tuple[str, str], ...] = ()
    ignore_state: frozenset[str] = frozenset()
    no_decay_on_biases: bool = False
    compute_dtype: str | None = None
    only: str | None = None
    clip_norm: float | None = None

    def apply(self, rule: Rule, base: Rule | None = None) -> Rule:
        """The mutant of ``rule``.

        ``base`` is the trajectory's main rule when ``rule`` is a parameter-group override
        of it: a hyperparameter change then applies only where the override keeps the
        main rule's value (an override's own ``weight_decay=0`` stays).
        """
        out = rule
        changes = dict(self.changes)
        if base is not None:
            changes = {k: v for k, v in changes.items() if getattr(rule, k) == getattr(base, k)}
        if changes:
            out = out.replace(**changes)
        if self.ops:
            out = out.with_ops(make_ops(self.ops, dict(self.attrs), out.ops))
        if self.freeze or self.compound:
            out = StatefulMutant(inner=out, freeze=self.freeze, compound=self.compound)
        if self.clip_norm is not None:
            out = ClippedGrads(inner=out, max_norm=self.clip_norm)
        return out

    def combine(self, other: Variant) -> Variant | None:
        """Both variants at once, or ``None`` when they contradict each other."""
        a1, a2 = dict(self.attrs), dict(other.attrs)
        c1, c2 = dict(self.changes), dict(other.changes)
        if any(a1[k] != a2[k] for k in a1.keys() & a2.keys()):
            return None
        if any(c1[k] != c2[k] for k in c1.keys() & c2.keys()):
            return None
        if self.compute_dtype and other.compute_dtype and self.compute_dtype != other.compute_dtype:
            return None
        if self.only and other.only and self.only != other.only:
            return None
        if self.clip_norm and other.clip_norm and self.clip_norm != other.clip_norm:
            return None
        ops = tuple(dict.fromkeys((*self.ops, *other.ops)))
        if len(ops) < len(self.ops) + len(other.ops):
            return None  # the same sub-expression replaced twice in the same way: not two bugs
        return Variant(
            label=f"{self.label}; {other.label}",
            ops=ops,
            attrs=tuple({**a1, **a2}.items()),
            changes=tuple({**c1, **c2}.items()),
            freeze=tuple(dict.fromkeys((*self.freeze, *other.freeze))),
            compound=tuple(dict.fromkeys((*self.compound, *other.compound))),
            ignore_state=self.ignore_state | other.ignore_state,
            no_decay_on_biases=self.no_decay_on_biases or other.no_decay_on_biases,
            compute_dtype=self.compute_dtype or other.compute_dtype,
            only=self.only or other.only,
            clip_norm=self.clip_norm or other.clip_norm,
        )


_BIAS_NAME = re.compile(r"^(b\d*|db\d*|bias(es)?|.*[._]bias(es)?|beta\d*|.*[._]beta)$", re.IGNORECASE)


def is_bias(path: Path, leaf: Any) -> bool:
    """Whether a parameter looks like a bias (or a norm's shift): named ``b1``/``bias``/``*.bias``, or a vector.

    Course biases are ``(n, 1)`` columns named ``b1``, ``b2``; torch's are vectors named ``*.bias``.
    """
    name = path[-1] if path else ""
    if name and _BIAS_NAME.match(name):
        return True
    return len(getattr(leaf, "shape", ())) <= 1 and bool(path)


def selects(only: str, path: Path, leaf: Any) -> bool:
    """Whether the parameter group ``only`` (``"biases"``, ``"weights"`` or a key path) holds ``path``."""
    if only == "biases":
        return is_bias(path, leaf)
    if only == "weights":
        return not is_bias(path, leaf)
    return path_str("", path) == only


def groups(params0: Tree) -> list[tuple[str, str]]:
    """``(only, words)``: the parameter groups a bug may be confined to (none for a single array).

    The biases, the weights, then each array on its own, without two groups of the same arrays.
    """
    leaves = flatten(params0)
    if len(leaves) < 2:
        return []
    out: list[tuple[str, str]] = []
    seen: set[frozenset[Path]] = {frozenset(p for p, _ in leaves)}
    candidates = [("biases", "the biases"), ("weights", "the weights")]
    candidates += [(path_str("", p), "/".join(str(k) for k in p)) for p, _ in leaves]
    for only, words in candidates:
        chosen = frozenset(p for p, leaf in leaves if selects(only, p, leaf))
        if not chosen or chosen in seen:
            continue
        seen.add(chosen)
        out.append((only, words))
    return out


def realize(
    variant: Variant, rule: Rule, overrides: Mapping[Path, Rule], params0: Tree
) -> tuple[Rule, dict[Path, Rule]]:
    """The mutant rule and its parameter-group overrides for one trajectory."""
    if variant.only is not None:
        whole = dataclasses.replace(variant, only=None)
        mutant, mutant_over = realize(whole, rule, overrides, params0)
        out = dict(overrides)
        for path, leaf in flatten(params0):
            if selects(variant.only, path, leaf):
                out[path] = mutant_over.get(path, mutant)
        return rule, out
    mutant = variant.apply(rule)
    out = {path: variant.apply(r, base=rule) for path, r in overrides.items()}
    if variant.no_decay_on_biases and not overrides:
        no_decay = rule.replace(weight_decay=0.0)
        for path, leaf in flatten(params0):
            if is_bias(path, leaf):
                out[path] = variant.apply(no_decay, base=rule)
    return mutant, out
