"""The catalog of known bugs and of known conventions, each built as a variant of the reference rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..rules import DEFAULT_OPS, Hyper, Rule
from ._mutants import (
    BcInverted,
    BcPower,
    BcStep,
    BcWrongBeta,
    EpsBcScaled,
    EpsOutside,
    MissingSqrt,
    NoBiasCorrection,
    NonSquareOnRawSquare,
    NonSquareOnStepSquare,
    NotSquared,
    RawInsteadOfAverage,
    SwapEma,
    Variant,
    WdSecondMomentOnly,
    WdWrongSign,
    WrongSign,
)

__all__ = ["CATALOG", "CONVENTIONS", "Bug", "Convention", "catalog_markdown"]


# ---------------------------------------------------------------------------------------------
# Introspection helpers
# ---------------------------------------------------------------------------------------------


def _specs(rule: Rule) -> dict[str, Hyper]:
    return {s.name: s for s in type(rule).hyper_specs()}


def _value(rule: Rule, name: str, default: Any = None) -> Any:
    return rule.hyper.get(name, default)


def _coupled_decay(rule: Rule) -> bool:
    decoupled = (
        _value(rule, "decoupled_weight_decay", False) or _value(rule, "weight_decay_form", "") == "decoupled"
    )
    return float(_value(rule, "weight_decay", 0.0) or 0.0) > 0 and not decoupled


def _decays(rule: Rule) -> bool:
    return float(_value(rule, "weight_decay", 0.0) or 0.0) > 0


def is_decay_rate(spec: Hyper) -> bool:
    """Whether a hyperparameter is a decay rate in [0, 1) (beta1, beta2, alpha, rho, ...)."""
    return spec.kind == "float" and spec.low == 0.0 and spec.high == 1.0


def _decay_rates(rule: Rule) -> list[tuple[str, float]]:
    return [(s.name, float(getattr(rule, s.name))) for s in type(rule).hyper_specs() if is_decay_rate(s)]


def _keys_with_role(rule: Rule, *roles: str) -> list[str]:
    roles_of = type(rule).state_roles
    return [k for k in rule.array_keys() if roles_of.get(k) in roles]


# ---------------------------------------------------------------------------------------------
# Applicability probe: does a variant change what the rule computes at all?
# ---------------------------------------------------------------------------------------------

_PROBE_CACHE: dict[tuple[Variant, Rule], bool] = {}


def _probe_case() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(20240607)
    params = {"w": rng.normal(size=(3, 2)), "v": rng.normal(size=(3,)), "tiny": rng.normal(size=(2, 2))}
    # eight steps: RAdam's rectified branch (and so its conventions) starts at step 6; the tiny
    # gradients show where an epsilon enters (Adafactor's eps1 added to g² or used as a floor)
    scale = {"w": 1.0, "v": 1.0, "tiny": 1e-12}
    grads = [{k: rng.normal(size=a.shape) * scale[k] for k, a in params.items()} for _ in range(8)]
    return params, grads


def alters(variant: Variant, rule: Rule) -> bool:
    """Whether ``variant`` changes what ``rule`` computes (on a small random case, eight steps).

    A variant that cannot be built for ``rule`` (an invalid hyperparameter) does not alter it.
    """
    key = (variant, rule)
    cacheable = rule.ops is DEFAULT_OPS
    if cacheable and key in _PROBE_CACHE:
        return _PROBE_CACHE[key]
    result = _alters(variant, rule)
    if cacheable:
        _PROBE_CACHE[key] = result
    return result


def _alters(variant: Variant, rule: Rule) -> bool:
    from .._trajectory import replay

    if variant.no_decay_on_biases:
        return _decays(rule)
    if variant.compute_dtype is not None:
        return True
    try:
        mutant = variant.apply(rule)
    except (ValueError, TypeError):
        return False
    params, grads = _probe_case()
    with np.errstate(all="ignore"):
        try:
            ref = replay(rule, params, grads)
        except (ZeroDivisionError, OverflowError, FloatingPointError):  # pragma: no cover
            return True
        try:
            mut = replay(mutant, params, grads)
        except (ZeroDivisionError, OverflowError, FloatingPointError):
            return True
        except (ValueError, TypeError):
            return False
    for (p1, s1), (p2, s2) in zip(ref, mut, strict=True):
        for k in p1:
            if not _same(p1[k], p2[k]):
                return True
        for key in rule.array_keys():
            if key in s2:
                for k in s1[key]:
                    if not _same(s1[key][k], s2[key][k]):
                        return True
    return False


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(np.array_equal(a, b, equal_nan=True))


# ---------------------------------------------------------------------------------------------
# Bugs
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bug:
    """A known bug of hand-written optimizers, as a mutation of the reference rules.

    * ``id``: the stable catalog id (used as the finding id of the audit);
    * ``summary``: one sentence: what the code does wrong;
    * ``wrong``/``fix``: the buggy update and the corrected one, as equations
      (g the gradient, p the parameter, m and v the first and second moments — S in
      course notation —, β a decay rate, ε epsilon, λ the weight decay, t the step);
    * ``symptom``: what the user sees; ``seen``: where people met it (an issue, a PR, a course);
    * ``source``: the paper and library version that define the correct form;
    * ``explains``: the ids of the reference-free findings (``optcheck.invariants``) this bug
      can cause, so that the audit links them to the diagnosis.

    ``variants(rule)`` lists the concrete ways to get the bug relative to ``rule`` (several
    forms seen in real code); ``applies_to(rule)`` says whether any of them changes what the
    rule computes; ``mutant(rule)`` builds the mutant rule(s).
    """

    id: str
    summary: str
    wrong: str
    fix: str
    symptom: str = ""
    seen: str = ""
    explains: tuple[str, ...] = ()
    source: str = ""
    make: Callable[[Rule], list[Variant]] = dataclasses.field(
        default=lambda rule: [], repr=False, compare=False
    )

    def variants(self, rule: Rule) -> list[Variant]:
        """The forms of this bug that change what ``rule`` computes."""
        return [v for v in self.make(rule) if alters(v, rule)]

    def applies_to(self, rule: Rule) -> bool:
        """Whether the bug can be built for ``rule`` and changes what it computes."""
        return bool(self.variants(rule))

    def mutant(self, rule: Rule) -> Rule | list[Rule]:
        """The mutant rule (a list when the bug has several forms); ``ValueError`` when it does not apply."""
        found = [v.apply(rule) for v in self.variants(rule)]
        if not found:
            raise ValueError(f"bug {self.id!r} does not apply to {rule!r}")
        return found[0] if len(found) == 1 else found


def _v_eps(rule: Rule) -> list[Variant]:
    out = [Variant("ε added after the division: g/√v + ε", ops=(EpsOutside,))]
    names = dict(_decay_rates(rule))
    beta1 = names.get("beta1") if _keys_with_role(rule, "first-moment") else None
    lr = _value(rule, "lr", None)
    if beta1 is not None:
        out.append(
            Variant(
                "ε added to the bias-corrected ratio: lr·(m̂/√v̂ + ε)",
                ops=(EpsOutside,),
                attrs=(("eps_scale_beta", beta1),),
            )
        )
    if isinstance(lr, float) and lr > 0:
        out.append(
            Variant(
                "ε added after the learning rate: lr·g/√v + ε",
                ops=(EpsOutside,),
                attrs=(("eps_scale_beta", beta1), ("eps_after_lr", lr)),
            )
        )
    return out


def _has_second_moment(rule: Rule) -> bool:
    return bool(_keys_with_role(rule, "second-moment", "accumulator"))


def _v_non_square(rule: Rule) -> list[Variant]:
    if not (_decays(rule) and _has_second_moment(rule)):
        return []
    if _coupled_decay(rule):
        return [
            Variant(
                "λp added to the raw squared gradient: v ← β·v + (1−β)·(g² + λp)", ops=(NonSquareOnRawSquare,)
            ),
            Variant(
                "λp added to the square of the regularised gradient: v ← β·v + (1−β)·((g + λp)² + λp)",
                ops=(NonSquareOnStepSquare,),
            ),
        ]
    return [Variant("λp added to g²: v ← β·v + (1−β)·(g² + λp)", ops=(NonSquareOnStepSquare,))]


def _v_wd_second_only(rule: Rule) -> list[Variant]:
    if not (_coupled_decay(rule) and _has_second_moment(rule)):
        return []
    return [Variant("(g + λp)² in the second moment, raw g in the step", ops=(WdSecondMomentOnly,))]


def _v_wd_missing(rule: Rule) -> list[Variant]:
    if not _decays(rule):
        return []
    return [Variant("weight decay never applied", changes=(("weight_decay", 0.0),))]


def _v_wd_coupled(rule: Rule) -> list[Variant]:
    if not (_decays(rule) and _value(rule, "decoupled_weight_decay", False)):
        return []
    return [
        Variant(
            "L2 added to the gradient instead of decoupled decay",
            changes=(("decoupled_weight_decay", False),),
        )
    ]


def _v_wd_sign(rule: Rule) -> list[Variant]:
    if not _decays(rule):
        return []
    return [Variant("weight decay with the wrong sign", ops=(WdWrongSign,))]


def _v_not_squared(rule: Rule) -> list[Variant]:
    if not _has_second_moment(rule):
        return []
    return [
        Variant("g accumulated instead of g²", ops=(NotSquared,), attrs=(("not_squared", "g"),)),
        Variant("|g| accumulated instead of g²", ops=(NotSquared,), attrs=(("not_squared", "abs"),)),
    ]


def _v_missing_sqrt(rule: Rule) -> list[Variant]:
    return [Variant("divides by v instead of √v", ops=(MissingSqrt,))]


def _v_swapped(rule: Rule) -> list[Variant]:
    rates = _decay_rates(rule)
    out = []
    for name, value in rates:
        others = [n for n, v in rates if v == value and n != name]
        label = "/".join([name, *others])
        if any(n < name for n in others):
            continue  # the same value is shared: one variant for all of them
        out.append(
            Variant(
                f"{label}: (1−β)·avg + β·x instead of β·avg + (1−β)·x",
                ops=(SwapEma,),
                attrs=(("swap_betas", frozenset({value})),),
            )
        )
    if len({v for _, v in rates}) > 1:
        out.append(Variant("every average: (1−β)·avg + β·x", ops=(SwapEma,), attrs=(("swap_betas", None),)))
    names = dict(rates)
    if "beta1" in names and "beta2" in names and names["beta1"] != names["beta2"]:
        out.append(
            Variant(
                "beta1 and beta2 swapped",
                changes=(("beta1", names["beta2"]), ("beta2", names["beta1"])),
            )
        )
    return out


def _bc_rates(rule: Rule) -> list[tuple[str, float]]:
    return [(n, v) for n, v in _decay_rates(rule) if n in ("beta1", "beta2")]


def _v_no_bc(rule: Rule) -> list[Variant]:
    rates = _bc_rates(rule)
    out = [Variant("no bias correction at all", ops=(NoBiasCorrection,), attrs=(("bc_skip", None),))]
    if len({v for _, v in rates}) > 1:
        for name, value in rates:
            which = "m" if name == "beta1" else "v"
            out.append(
                Variant(
                    f"no bias correction of {which} ({name})",
                    ops=(NoBiasCorrection,),
                    attrs=(("bc_skip", frozenset({value})),),
                )
            )
    return out


#: The steps at which a frozen step counter is tried (``min(t, k)``): 1 (never stored) and later.
FROZEN_AT = (1, 2, 3, 4)


def _v_bc_step(rule: Rule) -> list[Variant]:
    forms: list[tuple[str, tuple[tuple[str, Any], ...]]] = [
        ("step counter starting at 0: 1 − β^(t−1), zero on the first call", (("bc_step", "zero"),)),
        ("step counter one ahead: 1 − β^(t+1)", (("bc_step", "ahead"),)),
        ("step counter advanced twice per call: 1 − β^(2t)", (("bc_step", "twice"),)),
    ]
    for k in FROZEN_AT:
        forms.append((f"step counter frozen at {k}", (("bc_step", "frozen"), ("bc_frozen_at", k))))
    out = []
    for which, betas in _each_moment(rule):
        for text, attrs in forms:
            out.append(Variant(text + which, ops=(BcStep,), attrs=(*attrs, ("step_betas", betas))))
    return out


def _v_bc_beta(rule: Rule) -> list[Variant]:
    rates = dict(_bc_rates(rule))
    if "beta1" not in rates or "beta2" not in rates or rates["beta1"] == rates["beta2"]:
        return []
    b1, b2 = rates["beta1"], rates["beta2"]
    return [
        Variant(
            "v corrected with β1: v̂ = v/(1 − β1^t)", ops=(BcWrongBeta,), attrs=(("bc_beta_map", ((b2, b1),)),)
        ),
        Variant(
            "m corrected with β2: m̂ = m/(1 − β2^t)", ops=(BcWrongBeta,), attrs=(("bc_beta_map", ((b1, b2),)),)
        ),
    ]


def _v_eps_bc(rule: Rule) -> list[Variant]:
    rates = dict(_bc_rates(rule))
    if "beta2" not in rates or _value(rule, "eps", None) in (None, 0.0):
        return []
    if _value(rule, "eps_placement", "outside-sqrt") != "outside-sqrt":
        return []
    return [
        Variant(
            "ε·bc2 where ε·√bc2 is meant: (lr·√bc2/bc1)·m/(√v + ε·bc2)",
            ops=(EpsBcScaled,),
            attrs=(("eps_bc_beta", rates["beta2"]),),
        )
    ]


def _each_moment(rule: Rule) -> list[tuple[str, frozenset[float] | None]]:
    """``("", None)`` (every bias correction), then each moment's alone when their rates differ."""
    out: list[tuple[str, frozenset[float] | None]] = [("", None)]
    rates = _bc_rates(rule)
    if len({v for _, v in rates}) > 1:
        for name, value in rates:
            out.append((f" (of {'m' if name == 'beta1' else 'v'} only)", frozenset({value})))
    return out


def _v_bc_power(rule: Rule) -> list[Variant]:
    out = []
    for which, betas in _each_moment(rule):
        for mode, text in (
            ("pow", "(1 − β)^t instead of 1 − β^t"),
            ("complement", "1 − (1 − β)^t instead of 1 − β^t"),
        ):
            out.append(
                Variant(text + which, ops=(BcPower,), attrs=(("bc_power", mode), ("power_betas", betas)))
            )
    return out


def _v_bc_inverted(rule: Rule) -> list[Variant]:
    return [
        Variant(
            "multiplied by 1 − β^t instead of divided" + which,
            ops=(BcInverted,),
            attrs=(("inverted_betas", betas),),
        )
        for which, betas in _each_moment(rule)
    ]


def _v_compounds(rule: Rule) -> list[Variant]:
    pairs: list[tuple[str, str]] = []
    names = dict(_decay_rates(rule))
    for key in _keys_with_role(rule, "first-moment"):
        if "beta1" in names:
            pairs.append((key, "beta1"))
    for key in _keys_with_role(rule, "second-moment"):
        if "beta2" in names:
            pairs.append((key, "beta2"))
    if not pairs:
        return []
    out = [Variant(f"{key} stored bias-corrected", compound=((key, beta),)) for key, beta in pairs]
    if len(pairs) > 1:
        out.insert(0, Variant("every average stored bias-corrected", compound=tuple(pairs)))
    return out


def _v_momentum_missing(rule: Rule) -> list[Variant]:
    out = []
    names = dict(_decay_rates(rule))
    firsts = _keys_with_role(rule, "first-moment")
    if firsts and "beta1" in names:
        b1 = names["beta1"]
        ign = frozenset(firsts)
        out.append(
            Variant(
                "raw g used instead of the first moment (bias correction kept)",
                ops=(RawInsteadOfAverage,),
                attrs=(("raw_betas", frozenset({b1})),),
                ignore_state=ign,
            )
        )
        out.append(
            Variant(
                "raw g used instead of the bias-corrected first moment",
                ops=(RawInsteadOfAverage, NoBiasCorrection),
                attrs=(("raw_betas", frozenset({b1})), ("bc_skip", frozenset({b1}))),
                ignore_state=ign,
            )
        )
    mom = _value(rule, "momentum", None)
    if isinstance(mom, float) and mom > 0:
        changes: list[tuple[str, Any]] = [("momentum", 0.0)]
        if _value(rule, "nesterov", False):
            changes.append(("nesterov", False))
        ign = frozenset(_keys_with_role(rule, "momentum"))
        out.append(Variant("momentum never applied", changes=tuple(changes), ignore_state=ign))
    return out


def _v_nesterov(rule: Rule) -> list[Variant]:
    if not _value(rule, "nesterov", False):
        return []
    return [Variant("plain momentum instead of Nesterov", changes=(("nesterov", False),))]


def _v_wrong_sign(rule: Rule) -> list[Variant]:
    return [Variant("p + lr·update instead of p − lr·update", ops=(WrongSign,))]


def _v_state_not_updated(rule: Rule) -> list[Variant]:
    keys = rule.array_keys()
    out = [Variant(f"{k} never updated", freeze=(k,)) for k in keys]
    if len(keys) > 1:
        out.append(Variant("no state entry updated", freeze=tuple(keys)))
    if keys:
        out.append(Variant("no state entry (and not the step counter) updated", freeze=(*keys, "step")))
    else:
        out.append(Variant("step counter never updated", freeze=("step",)))
    return out


def alternative_value(spec: Hyper, value: Any) -> Any:
    """A plausible wrong value of a hyperparameter (for the ``hyperparameter-mismatch`` mutant)."""
    if spec.kind != "float" or value is None:
        return None
    v = float(value)
    if is_decay_rate(spec):
        alt = 0.99 if v != 0.99 else 0.9
    elif v == 0:
        return None
    else:
        alt = v * 10.0
    try:
        spec.validate("rule", alt)
    except ValueError:
        return None
    return alt


def _v_hyper(rule: Rule) -> list[Variant]:
    out = []
    for spec in type(rule).hyper_specs():
        if spec.name == "weight_decay":
            continue  # weight decay off/on is its own catalog entry
        alt = alternative_value(spec, getattr(rule, spec.name))
        if alt is not None:
            out.append(Variant(f"{spec.name}={alt:g}", changes=((spec.name, alt),)))
    return out


_B = Bug  # short alias for the table below

#: The catalog of known bugs, by id (insertion order: the order of the documentation).
CATALOG: Mapping[str, Bug] = {
    b.id: b
    for b in (
        _B(
            "eps-outside-denominator",
            "Epsilon is added after the division, g/√v + ε, instead of to the denominator, g/(√v + ε).",
            wrong="p ← p − lr·(g/√v + ε)",
            fix="p ← p − lr·g/(√v + ε)",
            symptom="NaN (0/0) where a gradient entry and its second moment are both zero; otherwise "
            "a drift of lr·ε per step and no protection where √v is tiny.",
            seen="The seed problem (a course-style RMSprop); from-scratch RMSprop and Adam on Q&A sites.",
            explains=("non-finite", "update-without-gradient"),
            source="Tieleman & Hinton (2012), lecture 6e; torch.optim.RMSprop and Adam 2.x add ε to √v.",
            make=_v_eps,
        ),
        _B(
            "non-square-term-in-second-moment",
            "A term that is not a square (such as the L2 penalty λp) is added to g² in the second "
            "moment, so v can turn negative and √v gives NaN.",
            wrong="v ← β·v + (1−β)·(g² + λp)",
            fix="v ← β·v + (1−β)·(g + λp)²  (add the L2 term to the gradient before squaring)",
            symptom="RuntimeWarning: invalid value encountered in sqrt; NaN in the parameters after a few "
            "steps; the second moment negative where p < 0.",
            seen="The seed problem: course RMSprop with L2 regularisation, NaN after a few steps.",
            explains=("negative-second-moment", "non-finite"),
            source="torch.optim.RMSprop/Adam 2.x: weight_decay adds λp to g before g is squared.",
            make=_v_non_square,
        ),
        _B(
            "weight-decay-in-second-moment-only",
            "The L2 term enters the second moment, (g + λp)², but the step still uses the raw gradient g.",
            wrong="v ← β·v + (1−β)·(g + λp)²;  p ← p − lr·g/(√v + ε)",
            fix="g ← g + λp once, used by both: v ← β·v + (1−β)·g²;  p ← p − lr·g/(√v + ε)",
            symptom="No NaN, but the weights are barely regularised: the penalty only shrinks the step size.",
            seen="A partial fix of the seed problem (the penalty moved inside the square, not into the step).",
            source="torch.optim.RMSprop/Adam 2.x: one regularised gradient feeds the moments and the step.",
            make=_v_wd_second_only,
        ),
        _B(
            "weight-decay-missing",
            "The weight-decay (L2) setting never reaches the update.",
            wrong="g ← g  (λ ignored)",
            fix="g ← g + λp (coupled L2), or p ← p·(1 − lr·λ) (decoupled decay)",
            symptom="Training is unaffected by the weight-decay setting; weights grow as without it.",
            seen="Paddle #5836 (decay silently ignored); AdaBelief PR #33 (decay applied after the gradient "
            "was consumed).",
            source="torch.optim 2.x weight_decay (L2) and torch.optim.AdamW 2.x (decoupled).",
            make=_v_wd_missing,
        ),
        _B(
            "weight-decay-coupled",
            "AdamW written as Adam with L2: λp is added to the gradient (and so passes through the "
            "moments) instead of decaying the weights directly.",
            wrong="g ← g + λp; then the Adam step",
            fix="p ← p·(1 − lr·λ); then the Adam step on the raw g",
            symptom="Weight decay much weaker than expected where gradients are large (it is divided by √v).",
            seen="Loshchilov & Hutter (2019); many hand-written AdamW.",
            source="Loshchilov & Hutter (2019), Decoupled Weight Decay Regularization; torch.optim.AdamW 2.x.",
            make=_v_wd_coupled,
        ),
        _B(
            "weight-decay-wrong-sign",
            "Weight decay with the wrong sign pushes the weights away from zero.",
            wrong="g ← g − λp  (or p ← p·(1 + lr·λ))",
            fix="g ← g + λp  (or p ← p·(1 − lr·λ))",
            symptom="Weights grow steadily; the loss diverges with a larger weight-decay setting.",
            seen="chainer #261.",
            source="torch.optim 2.x: g + λp (L2), p·(1 − lr·λ) (decoupled).",
            make=_v_wd_sign,
        ),
        _B(
            "second-moment-not-squared",
            "The gradient g (or |g|) is accumulated in the second moment instead of g².",
            wrong="v ← β·v + (1−β)·g",
            fix="v ← β·v + (1−β)·g²",
            symptom="NaN from the square root of a negative v (with g); steps of the wrong scale (with |g|).",
            seen="fastbook PR #342.",
            explains=("negative-second-moment", "non-finite", "update-too-large"),
            source="Kingma & Ba (2015), Algorithm 1: v averages g².",
            make=_v_not_squared,
        ),
        _B(
            "missing-sqrt",
            "The step divides by the second moment v instead of its square root √v.",
            wrong="p ← p − lr·g/(v + ε)",
            fix="p ← p − lr·g/(√v + ε)",
            symptom="Steps that explode where gradients are small and vanish where they are large.",
            seen="From-scratch Adam and RMSprop on Q&A sites.",
            explains=("non-finite", "update-too-large"),
            source="Kingma & Ba (2015), Algorithm 1: m̂/(√v̂ + ε).",
            make=_v_missing_sqrt,
        ),
        _B(
            "decay-rates-swapped",
            "A decay rate enters an average the wrong way round, (1−β)·avg + β·x, or β1 and β2 are swapped.",
            wrong="m ← (1−β)·m + β·g  (or β1 ↔ β2)",
            fix="m ← β·m + (1−β)·g, with β1 for the first moment and β2 for the second",
            symptom="The average forgets at once (it follows the last gradient); steps of the wrong size.",
            seen="blocks #1159 (β and 1−β swapped).",
            source="Kingma & Ba (2015), Algorithm 1: m ← β1·m + (1 − β1)·g.",
            explains=("update-too-large",),
            make=_v_swapped,
        ),
        _B(
            "missing-bias-correction",
            "A moment is used without its bias correction 1 − β^t, so the first steps are mis-scaled.",
            wrong="p ← p − lr·m/(√v + ε)",
            fix="m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t);  p ← p − lr·m̂/(√v̂ + ε)",
            symptom="Tiny (or huge) first steps that settle after about 1/(1 − β) steps.",
            seen="google-research/bert #153 (BERT's AdamWeightDecay had no bias correction).",
            source="Kingma & Ba (2015), section 3 (initialization bias correction).",
            explains=("update-too-large",),
            make=_v_no_bc,
        ),
        _B(
            "bias-correction-wrong-step",
            "The bias correction uses the wrong step count: a counter starting at 0 (1 − β^0 = 0, a "
            "division by zero), frozen, or off by one.",
            wrong="m̂ = m/(1 − β^(t−1))  (or t frozen, t + 1, 2t)",
            fix="t ← t + 1 before the update, stored with the state, so that t = 1 on the first call; "
            "m̂ = m/(1 − β^t)",
            symptom="inf or NaN at the very first step (counter from 0); mis-scaled steps otherwise.",
            seen="burn PR #630 (t starting at 0); geoopt #164 (counter advanced twice).",
            explains=("non-finite", "update-too-large"),
            source="Kingma & Ba (2015), Algorithm 1: t ← t + 1 before the update, so t = 1 first.",
            make=_v_bc_step,
        ),
        _B(
            "bias-correction-wrong-beta",
            "A bias correction uses the other moment's decay rate: v divided by 1 − β1^t (or m by 1 − β2^t).",
            wrong="v̂ = v/(1 − β1^t)",
            fix="v̂ = v/(1 − β2^t);  m̂ = m/(1 − β1^t)",
            symptom="First steps about √((1 − β1)/(1 − β2)) ≈ 10 times too small with the defaults, "
            "settling after about 1/(1 − β2) steps.",
            seen="A copy-paste slip in from-scratch Adam (the two correction lines differ in one character).",
            source="Kingma & Ba (2015), Algorithm 1: each moment is corrected with its own rate.",
            explains=("update-too-large",),
            make=_v_bc_beta,
        ),
        _B(
            "eps-bias-correction-wrong",
            "ε is rescaled by the bias correction 1 − β2^t where its square root is meant, so the "
            "'ε̂' form no longer equals the reference's ε.",
            wrong="p ← p − (lr·√bc2/bc1)·m/(√v + ε·bc2)",
            fix="p ← p − (lr·√bc2/bc1)·m/(√v + ε·√bc2)  (equal to (lr/bc1)·m/(√(v/bc2) + ε))",
            symptom="Steps slightly too large where √v is comparable to ε (tiny gradients), mostly in the "
            "first 1/(1 − β2) steps.",
            seen="Rewriting torch's Adam into the ε̂ form of Kingma & Ba section 2 (the efficient version).",
            source="Kingma & Ba (2015), end of section 2 (ε̂ = ε·√(1 − β2^t)); torch.optim.Adam 2.x.",
            make=_v_eps_bc,
        ),
        _B(
            "bias-correction-wrong-power",
            "The bias correction raises the wrong quantity to the power t: (1 − β)^t instead of 1 − β^t.",
            wrong="m̂ = m/(1 − β)^t",
            fix="m̂ = m/(1 − β^t)",
            symptom="Steps that grow geometrically: (1 − β)^t vanishes after a few steps.",
            seen="From-scratch Adam on Q&A sites.",
            explains=("non-finite", "update-too-large"),
            source="Kingma & Ba (2015), Algorithm 1: 1 − β^t.",
            make=_v_bc_power,
        ),
        _B(
            "bias-correction-inverted",
            "The moment is multiplied by its bias correction instead of divided by it.",
            wrong="m̂ = m·(1 − β^t)",
            fix="m̂ = m/(1 − β^t)",
            symptom="Very small first steps.",
            seen="convnetjs PR #70.",
            source="Kingma & Ba (2015), Algorithm 1: m̂ = m/(1 − β1^t).",
            make=_v_bc_inverted,
        ),
        _B(
            "bias-correction-compounds",
            "The bias-corrected value is written back into the running average, so the correction "
            "compounds from step to step.",
            wrong="m ← β·m + (1−β)·g;  m ← m/(1 − β^t)  (stored)",
            fix="keep m uncorrected in the state; use m̂ = m/(1 − β^t) only in the step",
            symptom="Averages that grow over the first steps; steps larger than lr.",
            seen="From-scratch Adam (course forums).",
            source="Kingma & Ba (2015), Algorithm 1: m̂ is a local value; m stays uncorrected.",
            explains=("update-too-large",),
            make=_v_compounds,
        ),
        _B(
            "momentum-not-applied",
            "The raw gradient is used where the first moment (momentum) belongs.",
            wrong="p ← p − lr·g/(√v̂ + ε)  (m computed but unused), or momentum ignored",
            fix="p ← p − lr·m̂/(√v̂ + ε);  with SGD, p ← p − lr·b where b ← μ·b + g",
            symptom="Noisy steps, as without momentum.",
            seen="From-scratch Adam and SGD with momentum.",
            source="Polyak (1964); torch.optim.SGD 2.x momentum; Kingma & Ba (2015).",
            make=_v_momentum_missing,
        ),
        _B(
            "nesterov-missing-lookahead",
            "Plain momentum where Nesterov momentum was asked for: the look-ahead term is missing.",
            wrong="p ← p − lr·b",
            fix="p ← p − lr·(g + μ·b)",
            symptom="Identical to plain momentum.",
            seen="Paddle PR #12231 and optax #900 (Nesterov formula errors).",
            source="Sutskever et al. (2013); torch.optim.SGD 2.x nesterov=True.",
            make=_v_nesterov,
        ),
        _B(
            "wrong-sign",
            "The step goes uphill: the update is added to the parameters instead of subtracted.",
            wrong="p ← p + lr·update",
            fix="p ← p − lr·update",
            symptom="The loss increases from the first step.",
            seen="Everywhere, once.",
            source="Gradient descent: p ← p − lr·g (torch.optim 2.x, maximize=False).",
            make=_v_wrong_sign,
        ),
        _B(
            "state-not-updated",
            "A state is computed but not carried to the next call (a local rebinding that never reaches "
            "the stored buffer), so every call starts again from the old state.",
            wrong="v_new = β·v + (1−β)·g²  (the old v is returned)",
            fix="return the new state, or write it into the stored buffer: state['v'] = β·v + (1−β)·g²",
            symptom="Every step looks like the first one.",
            seen="transformers PR #9751 (in-place ops on an alias of the state).",
            source="torch.optim 2.x: every state buffer is updated in place each step.",
            make=_v_state_not_updated,
        ),
        _B(
            "hyperparameter-mismatch",
            "The update is the reference rule with a different hyperparameter value.",
            wrong="the rule with, e.g., β2 = 0.99",
            fix="use the value you meant (e.g. β2 = 0.999), or audit with the value your code uses",
            symptom="Training that works, but not like the configuration says.",
            seen="A default copied from another library (Keras' ε = 1e-7, optax' RMSprop decay 0.9).",
            source="The defaults of torch.optim 2.x (optcheck's reference rules).",
            make=_v_hyper,
        ),
    )
}
"""The known bugs by id: each a :class:`Bug` whose ``mutant(rule)`` builds it from a reference rule."""


# ---------------------------------------------------------------------------------------------
# Conventions
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Convention:
    """A known convention that is *not* a bug: a variant of the reference that published code uses.

    ``variants(rule)`` builds it from the rule's own convention keywords, hyperparameters or
    parameter groups; ``applies_to(rule)`` says whether it changes what ``rule`` computes.
    ``source``: the paper and library versions that use it; ``seen``: where people met it.
    """

    id: str
    summary: str
    libraries: str = ""
    make: Callable[[Rule], list[Variant]] = dataclasses.field(
        default=lambda rule: [], repr=False, compare=False
    )
    source: str = ""
    seen: str = ""

    def variants(self, rule: Rule) -> list[Variant]:
        """The forms of this convention that change what ``rule`` computes."""
        return [v for v in self.make(rule) if alters(v, rule)]

    def applies_to(self, rule: Rule) -> bool:
        """Whether ``rule`` has this convention as an alternative to its current setting."""
        return bool(self.variants(rule))

    def variant(self, rule: Rule) -> Rule | list[Rule]:
        """The rule following this convention (``ValueError`` when it does not apply)."""
        found = [v.apply(rule) for v in self.variants(rule)]
        if not found:
            raise ValueError(f"convention {self.id!r} does not apply to {rule!r}")
        return found[0] if len(found) == 1 else found


def _keyword_choice(*values: str) -> Callable[[Rule], list[Variant]]:
    """Variants switching any convention keyword of the rule to one of ``values``."""

    def make(rule: Rule) -> list[Variant]:
        out = []
        for spec in type(rule).hyper_specs():
            if not spec.convention:
                continue
            for value in values:
                if value in spec.choices and getattr(rule, spec.name) != value:
                    out.append(Variant(f"{spec.name}={value!r}", changes=((spec.name, value),)))
        return out

    return make


def _c_bias(rule: Rule) -> list[Variant]:
    if not _decays(rule):
        return []
    return [Variant("no weight decay on biases", no_decay_on_biases=True)]


def _c_f32(rule: Rule) -> list[Variant]:
    return [Variant("computed in float32", compute_dtype="float32")]


def _c_decoupled(rule: Rule) -> list[Variant]:
    if not _decays(rule):
        return []
    if _value(rule, "decoupled_weight_decay", True) is False:
        return [Variant("decoupled decay p ← p·(1 − lr·λ)", changes=(("decoupled_weight_decay", True),))]
    if _value(rule, "weight_decay_form", None) == "l2":
        return [Variant("decoupled decay p ← p·(1 − lr·λ)", changes=(("weight_decay_form", "decoupled"),))]
    return []


def _c_clip(rule: Rule) -> list[Variant]:
    return [Variant("each gradient array clipped to norm 1 first", clip_norm=1.0)]


def _c_adagrad(rule: Rule) -> list[Variant]:
    v = _value(rule, "initial_accumulator_value", None)
    if v is None or v == 0.1:
        return []
    return [Variant("initial accumulator 0.1", changes=(("initial_accumulator_value", 0.1),))]


_C = Convention

#: Known conventions that are not bugs, by id; each built from the rules' own keywords or parameter groups.
CONVENTIONS: Mapping[str, Convention] = {
    c.id: c
    for c in (
        _C(
            "eps-inside-sqrt",
            "Epsilon inside the square root: g/√(v + ε).",
            "Keras RMSprop and Adagrad, optax rmsprop, TF1 RMSProp, every Adadelta",
            _keyword_choice("inside-sqrt"),
            source="Keras 3 RMSprop/Adagrad; optax.rmsprop (eps_in_sqrt=True); TF1 RMSPropOptimizer.",
        ),
        _C(
            "eps-hat",
            "Epsilon added before the bias correction (ε̂ = ε·√(1 − β2^t)): lr·√bc2/bc1·m/(√v + ε).",
            "Keras/TF Adam, torch SparseAdam and RAdam",
            _keyword_choice("hat"),
            source="Kingma & Ba (2015), end of section 2 (ε̂); tf.keras.optimizers.Adam.",
        ),
        _C(
            "momentum-ema",
            "Momentum as an average, v ← β·v + (1−β)·g, p ← p − lr·v (the course form).",
            "deep-learning courses",
            _keyword_choice("ema"),
            source="deeplearning.ai course 2 (momentum as an exponentially weighted average).",
        ),
        _C(
            "momentum-velocity",
            "Momentum as a velocity, v ← μ·v − lr·g, p ← p + v.",
            "Keras, cs231n",
            _keyword_choice("velocity"),
            source="Sutskever et al. (2013); keras.optimizers.SGD; cs231n notes.",
        ),
        _C(
            "no-decay-on-biases",
            "Weight decay on the weights only, not on biases (and norms).",
            "common practice; the course L2 cost (λ/2m)·ΣW²",
            _c_bias,
            source="transformers Trainer: decay on all layers except bias and LayerNorm weights.",
        ),
        _C(
            "amsgrad-on-corrected",
            "AMSGrad's maximum taken on the bias-corrected second moment.",
            "optax.amsgrad",
            _keyword_choice("corrected"),
            source="optax.amsgrad (the maximum of the bias-corrected ν).",
        ),
        _C(
            "adagrad-initial-accumulator",
            "Adagrad's accumulator starts at 0.1 instead of 0.",
            "optax, Keras",
            _c_adagrad,
            source="optax.adagrad and keras.optimizers.Adagrad (initial_accumulator_value=0.1).",
        ),
        _C(
            "nadam-keras-schedule",
            "NAdam's momentum schedule 0.96^t instead of 0.96^(0.004·t).",
            "Keras 3",
            _keyword_choice("keras"),
            source="keras.optimizers.Nadam (Keras 3): u_t = β1·(1 − 0.5·0.96^t).",
        ),
        _C(
            "nadam-constant-momentum",
            "NAdam without a momentum schedule: μ_t = β1.",
            "optax.nadam",
            _keyword_choice("constant"),
            source="optax.nadam (Dozat (2016) without the schedule).",
        ),
        _C(
            "eps-outside-sqrt",
            "Epsilon added to the bias-corrected root, m̂/(√v̂ + ε), where the reference adds it before "
            "the bias correction.",
            "optax.radam",
            _keyword_choice("outside-sqrt"),
            source="optax.radam (ε added to the bias-corrected root).",
        ),
        _C(
            "float32-compute",
            "The update computed in float32 (torch's default dtype) on float64 inputs.",
            "torch code with float32 tensors, GPU code",
            _c_f32,
            source="torch.get_default_dtype() is float32 (torch 2.x).",
        ),
        _C(
            "square-avg-init-one",
            "RMSprop's average of squares starts at 1 instead of 0.",
            "TF1 tf.train.RMSPropOptimizer, timm RMSpropTF, autograd's rmsprop",
            _keyword_choice("ones"),
            source="TF1 RMSPropOptimizer (rms slots initialised with ones); timm optim/rmsprop_tf.py "
            "('square_avg initialized to ones'); autograd misc/optimizers.py (avg_sq_grad = np.ones).",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "adafactor-eps1-added",
            "Adafactor adds eps1 to g² before averaging (no clamps), as in the paper's Algorithm 4.",
            "transformers, fairseq and timm Adafactor",
            _keyword_choice("add"),
            source="Shazeer & Stern (2018), Algorithm 4; transformers.Adafactor (eps=(1e-30, 1e-3)); "
            "fairseq optim/adafactor.py; timm optim/adafactor.py. torch.optim.Adafactor (2.5+) clamps instead.",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "adamax-eps-outside-max",
            "Adamax with ε added to the denominator, m/(u + ε), instead of inside the max.",
            "jax.example_libraries.optimizers.adamax",
            _keyword_choice("outside-max"),
            source="jax example_libraries/optimizers.py adamax (x − lr/(1 − b1^t)·m/(u + eps)); "
            "Kingma & Ba (2015) section 7.1 has no ε at all.",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "decay-after-step",
            "Decoupled decay applied after the step, to the new parameters: (p − step)·(1 − lr·λ).",
            "transformers.AdamW (v4, deprecated)",
            _keyword_choice("after-step"),
            source="transformers optimization.py AdamW (p.add_(p, alpha=-lr·wd) after addcdiv_); "
            "Loshchilov & Hutter (2019) Algorithm 2 decays before.",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "nadamw-mlcommons",
            "NAdam(W) in the MLCommons form: p ← p − lr·(β1·m + (1 − β1)·g)/(1 − β1^t)/(√v̂ + ε).",
            "timm NAdamW, MLCommons AlgoPerf NAdamW baseline",
            _keyword_choice("mlcommons"),
            source='timm optim/nadamw.py ("the only difference between NAdamW and AdamW"); MLCommons '
            "algorithmic-efficiency NAdamW baseline; Dozat (2016).",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "radam-no-update-window",
            "The original RAdam makes no update at all while the variance is not rectifiable (ρ_t < 5).",
            "LiyuanLucasLiu/RAdam with degenerated_to_sgd=False",
            _keyword_choice("none"),
            source="Liu et al. (2020), On the Variance of the Adaptive Learning Rate and Beyond; "
            "LiyuanLucasLiu/RAdam radam.py (step_size = -1: no update while N_sma < 5).",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "decoupled-decay",
            "Decoupled weight decay, p ← p·(1 − lr·λ), under a name that usually means L2 (Adam, SGD).",
            "fairseq Adam, timm SGDW",
            _c_decoupled,
            source="Loshchilov & Hutter (2019); fairseq optim/adam.py ('corresponds to the AdamW "
            "variant'); timm optim/sgdw.py.",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
        _C(
            "per-tensor-gradient-clipping",
            "Each parameter's gradient clipped to norm 1 inside the optimizer (BertAdam's max_grad_norm).",
            "pytorch-pretrained-bert BertAdam",
            _c_clip,
            source="pytorch-pretrained-bert optimization.py BertAdam (clip_grad_norm_(p, max_grad_norm), "
            "max_grad_norm=1.0).",
            seen="optcheck issue 13 (correct published code reported as a bug)",
        ),
    )
}
"""The known conventions that are not bugs, by id: each a :class:`Convention` built from the rules' keywords."""


def convention_variants(rule: Rule) -> list[tuple[str, Variant]]:
    """Every convention alternative of ``rule``: the catalogued ones, then any other convention keyword value."""
    out: list[tuple[str, Variant]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for conv in CONVENTIONS.values():
        for v in conv.variants(rule):
            out.append((conv.id, v))
            seen.add(v.changes)
    for spec in type(rule).hyper_specs():
        if not spec.convention:
            continue
        for value in spec.choices:
            changes = ((spec.name, value),)
            if value == getattr(rule, spec.name) or changes in seen:
                continue
            v = Variant(f"{spec.name}={value!r}", changes=changes)
            if alters(v, rule):
                out.append((f"{spec.name}={value}", v))
    return out


# ---------------------------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------------------------

_INTRO = """\
# Bug catalog

<!-- Generated from optcheck.diagnose.CATALOG and CONVENTIONS by
     optcheck.diagnose.catalog_markdown(); do not edit by hand (tests/test_diagnose.py
     checks that this page matches the catalog). -->

When `python -m optcheck audit` finds that your update differs from the reference rule, it
does not stop at "the parameters differ at step 3". Every bug below is built as a *mutant* of
the reference rule (one sub-expression replaced, a setting ignored, a state not carried
over), and the audit replays the mutants on the inputs where your code disagreed. A mutant that
reproduces your outputs within the tolerance names the bug; the audit reports its id, the
equation to change, and the evidence (how closely the mutant reproduces your code, and where).
When no single mutant explains the difference, pairs of mutants are tried (the seed problem,
a course-style RMSprop, has two bugs at once), then hyperparameter fits ("your beta2 behaves
like 0.99"). Known conventions that are *not* bugs are tried first, and reported as such.

Notation: g is the gradient, p the parameter, m and v the first and second moments (S in
course notation), β a decay rate, ε epsilon, λ the weight decay, lr the learning rate and t
the step, counted from 1.

From Python, the same search is `optcheck.diagnose.explain(trajectories)`; each id below is a
key of `optcheck.diagnose.CATALOG`, whose `mutant(rule)` builds the bug from any reference rule
it applies to.
"""


_OUTRO = """\
## Which rule is it, and where do they part? {#identify-and-plot}

`--rule auto` audits a target without saying which rule it implements: the audit records a few
trajectories, and `optcheck.diagnose.identify(trajectories)` replays every reference rule on them,
with its decay rates on a grid and the learning rate solved from the first step (rounded to the
value a person would type when that fits as well), then the known conventions, then the single
mutants of the closest rule. The result names the rule, its hyperparameters, the conventions and,
when the target is buggy, the closest mutant ("closest: rmsprop(alpha=0.9) with the bug
eps-outside-denominator"); the audit then runs against that rule and says what it identified.

`--plot FILE.png` (with the `plot` extra, `pip install "optcheck[plot]"`) draws, with
`optcheck.diagnose.plot_divergence(trajectory, reference_rule, path)`, the entry of the parameters
where your code first parts from the reference: your values and the reference's step by step,
the matching entry of the state (the second moment, your `S`) beneath, the step where they part
marked, and NaN or inf marked where they appear.

Both use the tolerance of `optcheck._compare` that the audit's step-by-step comparison uses:
parameters are compared by their change at each step, to 1e-10 of the step in float64 (2e-5 in
float32), and NaN matches NaN at the same places.
"""


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def catalog_markdown() -> str:
    """The bug-catalog page (``docs/bugs.md``), generated from :data:`CATALOG` and :data:`CONVENTIONS`."""
    parts = [_INTRO]
    parts.append("| id | what goes wrong |\n|---|---|\n")
    parts[-1] += "".join(f"| [`{b.id}`](#{b.id}) | {_cell(b.summary)} |\n" for b in CATALOG.values())
    for b in CATALOG.values():
        lines = [f"## `{b.id}` {{#{b.id}}}", "", b.summary, ""]
        if b.symptom:
            lines += [f"**Symptom.** {b.symptom}", ""]
        lines += [
            "**Wrong:**",
            "",
            "```text",
            b.wrong,
            "```",
            "",
            "**Right:**",
            "",
            "```text",
            b.fix,
            "```",
            "",
        ]
        if b.seen:
            lines += [f"**Seen in the wild.** {b.seen}", ""]
        if b.source:
            lines += [f"**Source.** {b.source}", ""]
        if b.explains:
            ids = ", ".join(f"`{e}`" for e in b.explains)
            lines += [f"**Explains** the reference-free findings {ids} when they come from this bug.", ""]
        parts.append("\n".join(lines))
    conv = [
        "## Conventions that are not bugs {#conventions}",
        "",
        "These variants of the reference are published conventions. When one of them reproduces "
        "your code, the audit passes with an information finding naming it.",
        "",
        "| id | convention | used by | source |",
        "|---|---|---|---|",
    ]
    conv += [
        f"| `{c.id}` | {_cell(c.summary)} | {_cell(c.libraries)} | {_cell(c.source)} |"
        for c in CONVENTIONS.values()
    ]
    parts.append("\n".join(conv) + "\n")
    parts.append(_OUTRO)
    return "\n".join(parts)
