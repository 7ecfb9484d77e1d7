"""The search: which convention, mutant, pair of mutants or hyperparameter value reproduces the target."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._compare import REPLAY_ERRORS, Comparison, Divergence, compare_trajectory, compare_trees, to_numpy
from .._core import validate as _v
from .._trajectory import Trajectory, check_trajectories, step_tree
from .._tree import Path, flatten
from ..rules import Rule, names, rule_class
from ._catalog import CATALOG, CONVENTIONS, Bug, convention_variants, is_decay_rate
from ._mutants import Variant, groups, realize

__all__ = [
    "DEFAULT_BUDGET",
    "IDENTIFY_BUDGET",
    "ConventionMatch",
    "Diagnosis",
    "Evidence",
    "Explanation",
    "Identification",
    "explain",
    "identify",
]


#: Candidates :func:`explain` may replay by default (each a replay of the failing trajectory,
#: and of every trajectory when it matches there). A count, not seconds: the same inputs give
#: the same diagnosis on any machine, however loaded.
DEFAULT_BUDGET = 3000

#: Rule candidates :func:`identify` may replay by default (a count, for the same reason).
IDENTIFY_BUDGET = 2500

# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Why a candidate is believed: it reproduces the target where the reference does not.

    * ``trajectory``/``step``: where the reference first parts from the target (the
      first failing trajectory, the step counted from 1);
    * ``reference_error``: how far the reference is from the target there, in tolerance units;
    * ``max_error``: the candidate's largest disagreement with the target over every
      compared step of every trajectory, in tolerance units (at most 1: a match);
    * ``cases``/``steps``: how many trajectories and steps were reproduced;
    * ``nonfinite_step``: the step at which the target produced a non-finite value that the
      candidate reproduces (in the first trajectory where that happens), or ``None``.
    """

    trajectory: int
    step: int
    reference_error: float
    max_error: float
    cases: int
    steps: int
    nonfinite_step: int | None = None

    def text(self) -> str:
        """One clause for messages."""
        cases = f"{self.cases} case{'s' if self.cases != 1 else ''}"
        how = (
            "exactly"
            if self.max_error == 0
            else f"(largest difference {self.max_error:.2g} of the tolerance)"
        )
        out = f"reproduces {self.steps} steps of {cases} {how}"
        if self.nonfinite_step is not None:
            out += f", including the non-finite values at step {self.nonfinite_step}"
        return out


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """A catalog bug that reproduces the target.

    ``id`` is the catalog id; ``message`` one paragraph for the user; ``fix`` the corrected
    equation (``wrong`` the buggy one); ``variant`` the form of the bug that matched;
    ``hyper`` the inferred values for ``hyperparameter-mismatch`` (``{"beta2": 0.99}``);
    ``together_with`` the other bugs needed at the same time (a pair); ``convention`` a
    convention the target follows besides the bug; ``explains`` the reference-free
    finding ids this bug accounts for.
    """

    id: str
    message: str
    summary: str
    wrong: str
    fix: str
    variant: str
    evidence: Evidence
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    together_with: tuple[str, ...] = ()
    convention: str | None = None
    explains: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ConventionMatch:
    """A convention (not a bug) that reproduces the target.

    ``id`` is a :data:`CONVENTIONS` id (or ``keyword=value`` for a convention keyword of the
    rule that the catalog does not name); ``label`` the setting in words; ``variant`` how it
    is built from the reference. ``rule`` and ``overrides`` are the reference under that
    convention, for the parameters of the first failing trajectory (``realize(params0)``
    builds them for other parameters); ``compute_dtype`` is set when the convention is to
    compute in another dtype (``float32-compute``): replay in that dtype.
    """

    id: str
    message: str
    summary: str
    label: str
    evidence: Evidence
    variant: Variant
    rule: Rule
    overrides: Mapping[Path, Rule] = dataclasses.field(default_factory=dict)
    compute_dtype: str | None = None

    reference: Rule | None = None

    def realize(
        self, params0: Any, overrides: Mapping[Path, Rule] | None = None
    ) -> tuple[Rule, dict[Path, Rule]]:
        """The reference under this convention, and its parameter groups, for parameters ``params0``.

        ``overrides`` are the audited reference's own parameter groups, if any.
        """
        base = self.reference if self.reference is not None else self.rule
        return realize(self.variant, base, overrides or {}, params0)


@dataclasses.dataclass(frozen=True)
class Explanation:
    """What :func:`explain` found.

    * ``conventions``: conventions that together reproduce every trajectory (not bugs):
      the verdict is then ``"pass"``; ``convention`` is the first of them;
    * ``diagnoses``: the catalog bugs that reproduce the target (each full explanation is
      one entry of ``matches``: one id, or two for a pair);
    * ``divergence``: where the target first parts from the reference (``None`` when it
      never does);
    * ``candidates``: how many candidates were replayed (the budget is counted in these);
      ``elapsed_s``: the time taken (measured for reports, never consulted by the search);
      ``complete``: ``False`` when the budget ran out before the search finished.
    """

    diagnoses: tuple[Diagnosis, ...] = ()
    conventions: tuple[ConventionMatch, ...] = ()
    divergence: Divergence | None = None
    matches: tuple[tuple[str, ...], ...] = ()
    candidates: int = 0
    elapsed_s: float = 0.0
    complete: bool = True

    @property
    def convention(self) -> ConventionMatch | None:
        """The convention that reproduces the target, if any."""
        return self.conventions[0] if self.conventions else None

    @property
    def verdict(self) -> str:
        """``"pass"`` when the target equals the reference or follows a known convention, else ``"fail"``."""
        if self.divergence is None or (self.conventions and not self.diagnoses):
            return "pass"
        return "fail"

    @property
    def ids(self) -> tuple[str, ...]:
        """The catalog ids of the diagnoses, in order."""
        return tuple(d.id for d in self.diagnoses)

    def text(self) -> str:
        """A few lines for a terminal."""
        if self.divergence is None:
            return "the target agrees with the reference"
        if self.conventions and not self.diagnoses:
            return "\n".join(f"convention {c.id}: {c.message}" for c in self.conventions)
        if not self.diagnoses:
            more = "" if self.complete else " (the search used up its budget)"
            return f"differs-from-reference: {self.divergence.message()}; no known bug reproduces it{more}"
        return "\n".join(f"{d.id}: {d.message}" for d in self.diagnoses)


# ---------------------------------------------------------------------------------------------
# Replaying candidates
# ---------------------------------------------------------------------------------------------


def _state0_for(rule: Rule, traj: Trajectory) -> dict[str, Any] | None:
    """The trajectory's initial state, with the entries ``rule`` needs (a mutant may have other array keys)."""
    if traj.state0 is None:
        return None
    keys = rule.array_keys()
    out = {k: v for k, v in traj.state0.items() if k in keys or not _is_tree_of_arrays(v)}
    missing = [k for k in keys if k not in out]
    if missing:
        fresh = rule.init(traj.params0)
        out.update({k: fresh[k] for k in missing})
    return out


def _is_tree_of_arrays(x: Any) -> bool:
    return isinstance(x, Mapping) or hasattr(x, "shape")


class _Search:
    """Shared state of one :func:`explain` call: the trajectories, the reference's results, the budget."""

    def __init__(self, trajectories: Sequence[Trajectory], budget: int) -> None:
        self.trajs = list(trajectories)
        self.t0 = time.perf_counter()  # for Explanation.elapsed_s only
        self.budget = budget
        self.tried = 0
        self.out_of_time = False
        self._repr_cache: dict[str, bool] = {}
        self.ref = [compare_trajectory(tr, index=i) for i, tr in enumerate(self.trajs)]
        self.failing = [i for i, c in enumerate(self.ref) if not c.matched]
        passing = [i for i, c in enumerate(self.ref) if c.matched]
        self.order = self.failing + passing
        self.first = self.failing[0] if self.failing else 0
        div = self.ref[self.first].divergence
        self.divergence = div
        self.d = div.step if div is not None else 1

    def time_left(self) -> bool:
        """Whether the budget (a count of replayed candidates) allows another candidate."""
        if self.tried >= self.budget:
            self.out_of_time = True
        return not self.out_of_time

    def _compare(self, i: int, variant: Variant, max_steps: int | None = None) -> Comparison:
        tr = self.trajs[i]
        rule, overrides = realize(variant, tr.rule, tr.overrides, tr.params0)
        return compare_trajectory(
            tr,
            rule,
            overrides,
            index=i,
            compute_dtype=variant.compute_dtype,
            state0=_state0_for(rule, tr),
            ignore_state=variant.ignore_state,
            max_steps=max_steps,
        )

    def evaluate(self, variant: Variant) -> Evidence | None:
        """The evidence that ``variant`` reproduces every trajectory, or ``None``."""
        self.tried += 1
        if variant.compute_dtype is not None and not self._representable(variant.compute_dtype):
            return None
        try:
            quick = self._compare(self.first, variant, max_steps=self.d)
            if not quick.matched:
                return None
            steps = 0
            worst = 0.0
            nonfinite: int | None = None
            for i in self.order:
                c = self._compare(i, variant)
                if not c.matched:
                    return None
                steps += c.steps
                worst = max(worst, c.max_error)
                if nonfinite is None and c.nonfinite_step is not None and i == self.first:
                    nonfinite = c.nonfinite_step
        except (ValueError, TypeError):
            return None  # the variant cannot be built for these hyperparameters
        ref_err = self.divergence.error if self.divergence is not None else 0.0
        return Evidence(self.first, self.d, ref_err, worst, len(self.order), steps, nonfinite)

    def _representable(self, dtype: str) -> bool:
        """Whether every parameter the target returned is a value of ``dtype`` (it computed in it)."""
        if dtype not in self._repr_cache:
            ok = True
            for tr in self.trajs:
                for params in tr.params:
                    for _, leaf in flatten(params):
                        a = to_numpy(leaf)
                        if a.dtype.kind != "f":
                            continue
                        with np.errstate(all="ignore"):
                            back = a.astype(dtype).astype(a.dtype)
                        if not np.array_equal(back, a, equal_nan=True):
                            ok = False
                            break
            self._repr_cache[dtype] = ok
        return self._repr_cache[dtype]

    def error_of(self, variant: Variant) -> float:
        """A continuous disagreement of ``variant`` with the first failing trajectory (for fits)."""
        self.tried += 1
        tr = self.trajs[self.first]
        try:
            rule, overrides = realize(variant, tr.rule, tr.overrides, tr.params0)
            return _trajectory_error(tr, rule, overrides, _state0_for(rule, tr))
        except (ValueError, TypeError):
            return math.inf


def _trajectory_error(
    traj: Trajectory, rule: Rule, overrides: Mapping[Any, Rule], state0: Mapping[str, Any] | None
) -> float:
    """The largest parameter disagreement (tolerance units) over the steps before the target's first NaN."""
    params = traj.params0
    state: Mapping[str, Any] = rule.init(params) if state0 is None else state0
    worst = 0.0
    for k in range(traj.steps):
        prev = params
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                params, state = step_tree(rule, params, traj.grads[k], state, overrides)
        except REPLAY_ERRORS:
            return 1e300
        err, _, _ = compare_trees(traj.params[k], params, start=prev)
        worst = max(worst, min(err, 1e300))
        if not all(np.isfinite(np.asarray(x)).all() for _, x in flatten(traj.params[k])):
            break
    return worst


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


_SYMBOL = re.compile(r"(?<![A-Za-z_])([mv])(?![A-Za-z_0-9])")


def _symbols(rule: Rule, names: Mapping[str, str]) -> dict[str, str]:
    """The user's short names for the catalog's symbols m (first moment) and v (second moment)."""
    roles = type(rule).state_roles
    out: dict[str, str] = {}
    for sym, wanted in (("m", ("first-moment",)), ("v", ("second-moment", "accumulator"))):
        for key in rule.array_keys():
            name = names.get(key, "")
            if roles.get(key) in wanted and name.isidentifier() and len(name) <= 4:
                out[sym] = name
                break
    return out


def in_symbols(text: str, symbols: Mapping[str, str]) -> str:
    """``text`` with the symbols m and v renamed to the user's names (``v`` -> ``S``)."""
    if not symbols:
        return text
    return _SYMBOL.sub(lambda mt: symbols.get(mt.group(1), mt.group(1)), text)


def _bug_message(
    bug: Bug,
    rule: Rule,
    variant: str,
    ev: Evidence,
    search: _Search,
    partners: tuple[str, ...] = (),
    convention: str | None = None,
    hyper: Mapping[str, Any] | None = None,
) -> str:
    names = search.trajs[ev.trajectory].names
    sym = _symbols(rule, names)
    where = search.divergence.message(names) if search.divergence else ""
    fix = in_symbols(bug.fix, sym)
    if hyper:
        said, got = _hyper_texts(rule, hyper)
        return (
            f"your update behaves like {rule.name} with {got}, but the audit expected {said}: "
            f"{rule.name}({got}) {ev.text()}. Where the reference parts from it: {where}. "
            f"Fix: use {said} in your code, or audit with {got} if that is the value you meant."
        )
    head = (
        f"{in_symbols(bug.summary, sym)} A mutant of {rule.name} with this bug ({in_symbols(variant, sym)})"
    )
    if partners:
        head += f", together with {' and '.join(partners)},"
    if convention:
        head += f" under the convention {convention},"
    return f"{head} {ev.text()}, where the reference does not ({where}). Fix: {fix}."


def _hyper_texts(rule: Rule, hyper: Mapping[str, Any]) -> tuple[str, str]:
    """``("beta2=0.999", "beta2=0.99")``: what the audit expected, and what the target behaves like."""
    said = ", ".join(f"{k}={_fmt(rule.hyper.get(k))}" for k in hyper)
    got = ", ".join(f"{k}={_fmt(v)}" for k, v in hyper.items())
    return said, got


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v)


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------


_FIT_EXCLUDED = {
    # flips that the catalog names as bugs of their own
    ("weight_decay", 0.0),
    ("decoupled_weight_decay", False),
    ("nesterov", False),
    ("momentum", 0.0),
}


def _nice_grid(spec: Any, current: float) -> list[float]:
    """Values people type for a hyperparameter of this kind."""
    if is_decay_rate(spec):
        vals = [0.0, 0.5, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1 - current]
    else:
        vals = [m * 10.0**e for e in range(-12, 2) for m in (1.0, 2.0, 3.0, 5.0)]
        vals += [current * f for f in (10.0, 0.1, 2.0, 0.5, 100.0, 0.01)]
        vals.append(0.0)
    out: list[float] = []
    for v in vals:
        v = float(f"{v:.12g}")
        if v == current or v in out:
            continue
        try:
            spec.validate("rule", v)
        except ValueError:
            continue
        out.append(v)
    return out


def _fit_variants(rule: Rule) -> list[tuple[str, Any]]:
    """(hyperparameter, value) candidates for ``hyperparameter-mismatch``: flips, then nice values."""
    out: list[tuple[str, Any]] = []
    for spec in type(rule).hyper_specs():
        cur = getattr(rule, spec.name)
        if spec.kind == "bool":
            out.append((spec.name, not cur))
        elif spec.kind == "float" and cur is not None:
            out.extend((spec.name, v) for v in _nice_grid(spec, float(cur)))
    return [(n, v) for n, v in out if (n, v) not in _FIT_EXCLUDED]


def _golden(f: Any, lo: float, hi: float, iters: int) -> tuple[float, float]:
    """Golden-section minimisation of ``f`` on ``[lo, hi]``: ``(x, f(x))``."""
    r = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    return (c, fc) if fc <= fd else (d, fd)


def _continuous_fit(search: _Search, rule: Rule, spec: Any) -> tuple[float, Evidence] | None:
    """Fit one float hyperparameter by a grid then a golden-section search, and verify the fit."""
    name = spec.name
    cur = float(getattr(rule, name))
    decay = is_decay_rate(spec)

    def to_x(u: float) -> float:
        return 1.0 - math.exp(u) if decay else math.exp(u)

    def f(u: float) -> float:
        x = to_x(u)
        try:
            spec.validate("rule", x)
        except ValueError:
            return math.inf
        return search.error_of(Variant(f"{name}={x:g}", changes=((name, x),)))

    if decay:
        us = [math.log(1.0 - b) for b in (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999)]
    else:
        if cur <= 0:
            return None
        base = math.log(cur)
        us = [base + math.log(10.0) * k / 2 for k in range(-8, 9)]
    vals = [f(u) for u in us]
    best = int(np.argmin(vals))
    if not math.isfinite(vals[best]):
        return None
    lo = us[max(best - 1, 0)]
    hi = us[min(best + 1, len(us) - 1)]
    u, _ = _golden(f, lo, hi, 48)
    if not search.time_left():
        return None
    x = to_x(u)
    for candidate in (float(f"{x:.3g}"), float(f"{x:.6g}"), x):
        try:
            spec.validate("rule", candidate)
        except ValueError:
            continue
        if candidate == cur:
            continue
        ev = search.evaluate(Variant(f"{name}={candidate:g}", changes=((name, candidate),)))
        if ev is not None:
            return candidate, ev
    return None


@dataclasses.dataclass
class _Match:
    ids: tuple[str, ...]
    variants: tuple[str, ...]
    evidence: Evidence
    convention: str | None = None
    hyper: Mapping[str, Any] | None = None
    ignored: frozenset[str] = frozenset()


def _groupable(v: Variant) -> bool:
    """Whether a variant can be confined to some parameters (a per-leaf rule of the same kind)."""
    return not (v.freeze or v.compound or v.clip_norm or v.compute_dtype or v.no_decay_on_biases)


def _singles(rule: Rule) -> list[tuple[Bug, Variant]]:
    out: list[tuple[Bug, Variant]] = []
    for bug in CATALOG.values():
        if bug.id == "hyperparameter-mismatch":
            continue
        out.extend((bug, v) for v in bug.variants(rule))
    return out


def explain(trajectories: Sequence[Trajectory], *, budget: int = DEFAULT_BUDGET) -> Explanation:
    """Name the bug: which catalog mutants reproduce the target where the reference does not.

    ``trajectories`` are the audit's records of the target (see
    :class:`~optcheck._trajectory.Trajectory`), all for the same reference rule. The search,
    stopping at the first stage that finds something:

    1. conventions that are not bugs (:data:`CONVENTIONS`, alone or two together): a match
       gives the verdict ``"pass"`` with the convention named;
    2. every single mutant of :data:`CATALOG` that applies to the rule;
    3. hyperparameter fits (``hyperparameter-mismatch``: a flipped flag, or a value people
       type for that kind of hyperparameter);
    3b. every single mutant confined to one parameter group (the biases, the weights) or one
       array, the reference elsewhere;
    4. a convention together with a single mutant;
    5. pairs of mutants of two different bugs;
    6. a continuous fit of one hyperparameter at a time (``hyperparameter-mismatch`` with a
       value such as ``reg/batch_size``), while the budget lasts.

    A candidate must reproduce every trajectory within the tolerance of
    :func:`optcheck._compare.leaf_error` (NaN where the target has NaN), the
    failing ones first. ``budget`` bounds the number of candidates replayed (a count, never
    seconds, so the diagnosis is the same on any machine); the result says whether the search
    was complete. Returns an :class:`Explanation` (no diagnoses when nothing reproduces the
    target: the audit then reports ``differs-from-reference``).
    """
    budget = _v.check_int("budget", budget, low=1)
    trajs = check_trajectories(trajectories)
    s = _Search(trajs, budget)
    if not s.failing:
        return Explanation(divergence=None, elapsed_s=time.perf_counter() - s.t0)
    rule = trajs[s.first].rule

    def done(
        matches: list[_Match] | None = None, conventions: list[ConventionMatch] | None = None
    ) -> Explanation:
        return _explanation(s, rule, matches or [], conventions or [])

    # 1. conventions, alone then two together
    convs = convention_variants(rule)
    found: list[ConventionMatch] = []
    for cid, v in convs:
        if not s.time_left():
            break
        ev = s.evaluate(v)
        if ev is not None:
            found.append(_conv_match(cid, v, ev, rule, s))
    if not found:
        for (c1, v1), (c2, v2) in itertools.combinations(convs, 2):
            if not s.time_left():
                break
            both = v1.combine(v2)
            if both is None:
                continue
            ev = s.evaluate(both)
            if ev is not None:
                found = [_conv_match(c1, v1, ev, rule, s, both), _conv_match(c2, v2, ev, rule, s, both)]
                break
    if found:
        return done(conventions=found)

    # 2. single mutants
    singles = _singles(rule)
    matches: list[_Match] = []
    for bug, v in singles:
        if not s.time_left():
            break
        ev = s.evaluate(v)
        if ev is not None:
            matches.append(_Match((bug.id,), (v.label,), ev, ignored=v.ignore_state))
    if matches:
        return done(matches)

    # 3. hyperparameter fits
    fitted: set[str] = set()
    for name, value in _fit_variants(rule):
        if name in fitted or not s.time_left():
            continue
        v = Variant(f"{name}={_fmt(value)}", changes=((name, value),))
        ev = s.evaluate(v)
        if ev is not None:
            fitted.add(name)
            matches.append(_Match(("hyperparameter-mismatch",), (v.label,), ev, hyper={name: value}))
    if matches:
        return done(matches)

    # 3b. single mutants confined to one parameter group or one array
    for only, words in groups(trajs[s.first].params0):
        for bug, v in singles:
            if not _groupable(v) or not s.time_left():
                continue
            gv = dataclasses.replace(v, only=only, label=f"{v.label}, on {words} only")
            ev = s.evaluate(gv)
            if ev is not None:
                matches.append(_Match((bug.id,), (gv.label,), ev, ignored=gv.ignore_state))
    if matches:
        return done(matches)

    # 4. a convention together with one mutant
    for cid, cv in convs:
        for bug, v in singles:
            if not s.time_left():
                break
            both = cv.combine(v)
            if both is None:
                continue
            ev = s.evaluate(both)
            if ev is not None:
                matches.append(_Match((bug.id,), (v.label,), ev, convention=cid, ignored=both.ignore_state))
    if matches:
        return done(matches)

    # 5. pairs of mutants of two different bugs
    for (b1, v1), (b2, v2) in itertools.combinations(singles, 2):
        if b1.id == b2.id:
            continue
        if not s.time_left():
            break
        both = v1.combine(v2)
        if both is None:
            continue
        ev = s.evaluate(both)
        if ev is not None:
            matches.append(_Match((b1.id, b2.id), (v1.label, v2.label), ev, ignored=both.ignore_state))
    if matches:
        return done(matches)

    # 6. a continuous fit of one hyperparameter (a value nobody types, such as reg/batch_size)
    for spec in type(rule).hyper_specs():
        if spec.kind != "float" or getattr(rule, spec.name) is None or not s.time_left():
            continue
        fit = _continuous_fit(s, rule, spec)
        if fit is not None:
            value, ev = fit
            matches.append(
                _Match(
                    ("hyperparameter-mismatch",), (f"{spec.name}={value:.6g}",), ev, hyper={spec.name: value}
                )
            )
    return done(matches)


def _conv_match(
    cid: str, v: Variant, ev: Evidence, rule: Rule, s: _Search, combined: Variant | None = None
) -> ConventionMatch:
    conv = CONVENTIONS.get(cid)
    summary = conv.summary if conv else f"The convention {v.label} of {rule.name}."
    used = f" (used by {conv.libraries})" if conv and conv.libraries else ""
    msg = (
        f"your update follows the convention {cid}{used}, not a bug: {summary} "
        f"{rule.name} with {v.label} {ev.text()}."
    )
    tr = s.trajs[s.first]
    built = v if combined is None else combined
    conv_rule, overrides = realize(built, tr.rule, tr.overrides, tr.params0)
    return ConventionMatch(
        cid, msg, summary, v.label, ev, built, conv_rule, overrides, built.compute_dtype, tr.rule
    )


def _explanation(
    s: _Search, rule: Rule, matches: list[_Match], conventions: list[ConventionMatch]
) -> Explanation:
    mapped: set[str] = set()
    for tr in s.trajs:
        if tr.states:
            mapped |= set(tr.states[0])
    # a match that checked every mapped state entry beats one that had to skip some
    if any(not (m.ignored & mapped) for m in matches):
        matches = [m for m in matches if not (m.ignored & mapped)]
    sym = _symbols(rule, s.trajs[s.first].names)
    diagnoses: dict[str, Diagnosis] = {}
    for m in matches:
        for bug_id, label in zip(m.ids, m.variants, strict=True):
            bug = CATALOG[bug_id]
            partners = tuple(i for i in m.ids if i != bug_id)
            prev = diagnoses.get(bug_id)
            if prev is not None:
                together = tuple(dict.fromkeys((*prev.together_with, *partners)))
                hyper = {**prev.hyper, **(m.hyper or {})}
                if together != prev.together_with or hyper != prev.hyper:
                    msg = _bug_message(
                        bug, rule, prev.variant, prev.evidence, s, together, prev.convention, hyper
                    )
                    diagnoses[bug_id] = dataclasses.replace(
                        prev, together_with=together, hyper=hyper, message=msg
                    )
                continue
            msg = _bug_message(bug, rule, label, m.evidence, s, partners, m.convention, m.hyper)
            diagnoses[bug_id] = Diagnosis(
                id=bug_id,
                message=msg,
                summary=bug.summary,
                wrong=in_symbols(bug.wrong, sym) if not m.hyper else _hyper_texts(rule, m.hyper)[1],
                fix=in_symbols(bug.fix, sym) if not m.hyper else _hyper_texts(rule, m.hyper)[0],
                variant=label,
                evidence=m.evidence,
                hyper=dict(m.hyper or {}),
                together_with=partners,
                convention=m.convention,
                explains=bug.explains,
            )
    return Explanation(
        diagnoses=tuple(diagnoses.values()),
        conventions=tuple(conventions),
        divergence=s.divergence,
        matches=tuple(dict.fromkeys(m.ids for m in matches)),
        candidates=s.tried,
        elapsed_s=time.perf_counter() - s.t0,
        complete=not s.out_of_time,
    )


# ---------------------------------------------------------------------------------------------
# identify (--rule auto)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identification:
    """What :func:`identify` found: the rule (with hyperparameters) the target implements.

    * ``rule``: the reference rule, hyperparameters fitted, that reproduces the target, or
      the closest one (``None`` when no rule comes near);
    * ``conventions``: the conventions it follows (:data:`CONVENTIONS` ids);
    * ``bugs``: the catalog ids of the closest mutant when the rule itself does not match;
    * ``matched``: whether ``rule`` (with those conventions and bugs) reproduces every trajectory;
    * ``max_error``: its largest disagreement in tolerance units (``inf`` when not matched);
    * ``ranking``: every rule tried with its best disagreement, closest first.
    """

    rule: Rule | None
    conventions: tuple[str, ...] = ()
    bugs: tuple[str, ...] = ()
    matched: bool = False
    max_error: float = math.inf
    ranking: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str | None:
        """The identified rule's registry name."""
        return self.rule.name if self.rule is not None else None

    def message(self) -> str:
        """One sentence: what was identified."""
        if self.rule is None:
            return "no reference rule reproduces the target"
        hyper = _changed_hyper(self.rule)
        text = f"{self.rule.name}({hyper})"
        if self.conventions:
            text += " with the convention " + ", ".join(self.conventions)
        if self.bugs:
            text += " with the bug " + " and ".join(self.bugs)
        if self.matched:
            return f"identified {text}: it reproduces the target"
        return f"closest: {text}, but it does not reproduce the target"


def _changed_hyper(rule: Rule) -> str:
    specs = {s.name: s for s in type(rule).hyper_specs()}
    parts = []
    for k, v in rule.hyper.items():
        if v != specs[k].default:
            parts.append(f"{k}={_fmt(v)}")
    return ", ".join(parts)


def _lr_ratio(traj: Trajectory, rule: Rule) -> float | None:
    """The learning rate that best explains the target's first step, if the step is linear in lr."""
    try:
        with np.errstate(all="ignore"):
            p1, _ = rule.step(traj.params0, traj.grads[0], rule.init(traj.params0))
    except (*REPLAY_ERRORS, ValueError, TypeError):
        return None
    num = den = 0.0
    leaves = zip(flatten(p1), flatten(traj.params[0]), flatten(traj.params0), strict=True)
    for (_, ref), (_, tgt), (_, p0) in leaves:
        dr = np.asarray(ref, dtype=np.float64) - np.asarray(p0, dtype=np.float64)
        dt = np.asarray(tgt, dtype=np.float64) - np.asarray(p0, dtype=np.float64)
        ok = np.isfinite(dr) & np.isfinite(dt)
        num += float(np.sum(dr[ok] * dt[ok]))
        den += float(np.sum(dr[ok] * dr[ok]))
    if den <= 0 or num <= 0:
        return None
    lr = float(rule.hyper["lr"]) * num / den
    return float(f"{lr:.6g}")


def _complexity(rule: Rule) -> int:
    """How many hyperparameters differ from the rule's defaults (fewer: a simpler explanation)."""
    return sum(1 for spec in type(rule).hyper_specs() if getattr(rule, spec.name) != spec.default)


def _lr_candidates(lr: float) -> list[float]:
    out = [lr]
    for digits in (1, 2, 3):
        v = float(f"{lr:.{digits - 1}e}")
        if v not in out and abs(v - lr) <= 1e-3 * abs(lr):
            out.insert(0, v)
    return out


def _candidate_rules(cls: type[Rule], start: Mapping[str, Any], traj: Trajectory) -> Iterable[Rule]:
    """Rules of class ``cls``: the starting hyperparameters, then grids of decay rates with lr solved."""
    specs = {s.name: s for s in cls.hyper_specs()}
    try:
        base = cls(**{k: v for k, v in start.items() if k in specs})
    except (ValueError, TypeError):
        base = cls()
    yield base
    rates = [s for s in cls.hyper_specs() if is_decay_rate(s) or s.name == "momentum"][:2]
    grid = (0.0, 0.5, 0.9, 0.95, 0.98, 0.99, 0.999)
    combos: list[dict[str, float]] = [{}]
    for spec in rates:
        combos = [{**c, spec.name: g} for c in combos for g in grid]
    for combo in combos:
        try:
            r = base.replace(**combo)
        except (ValueError, TypeError):
            continue
        lr = _lr_ratio(traj, r) if "lr" in specs else None
        if lr is None:
            yield r
            continue
        for value in _lr_candidates(lr):
            with contextlib.suppress(ValueError, TypeError):
                yield r.replace(lr=value)


def _rule_error(traj: Trajectory, rule: Rule) -> float:
    try:
        return _trajectory_error(traj, rule, {}, None)
    except (ValueError, TypeError):
        return math.inf


def _user_hyper(rule: Rule) -> dict[str, Any]:
    """The hyperparameters of ``rule`` that differ from its class defaults (what the user set)."""
    return {
        s.name: getattr(rule, s.name) for s in type(rule).hyper_specs() if getattr(rule, s.name) != s.default
    }


def identify(trajectories: Sequence[Trajectory], *, budget: int = IDENTIFY_BUDGET) -> Identification:
    """Which rule, conventions and hyperparameters the target implements (``--rule auto``).

    For every registered rule: its defaults (with the hyperparameters the user set on the
    trajectories' rule, where the names agree), then grids of its decay rates and momentum
    with the learning rate solved from the first step (and rounded to the value a person
    would type, when that fits as well). Candidates that reproduce the first trajectory
    are checked against every trajectory (the parameters only: with ``--rule auto`` the
    target's state cannot be mapped), simplest first (fewest hyperparameters away from
    the defaults). When none does, the known conventions are tried on the closest
    candidates, then the single catalog mutants of the closest rule. ``budget`` bounds the
    number of candidates replayed (a count, never seconds: the result is the same on any machine).
    """
    budget = _v.check_int("budget", budget, low=1)
    trajs = check_trajectories(trajectories)
    used = 0
    plain = [dataclasses.replace(tr, states=None, overrides={}, state0=None) for tr in trajs]
    start = _user_hyper(trajs[0].rule)
    best: dict[str, tuple[float, int, Rule]] = {}
    exact: list[tuple[int, int, Rule]] = []
    for order, name in enumerate(names()):
        cls = rule_class(name)
        for r in _candidate_rules(cls, start, plain[0]):
            used += 1
            err = _rule_error(plain[0], r)
            key = (err, _complexity(r))
            if name not in best or key < best[name][:2]:
                best[name] = (err, key[1], r)
            if err <= 1.0:
                exact.append((key[1], order, r))
            if used >= budget:
                break
    ranking = tuple(sorted(((n, e) for n, (e, _, _) in best.items()), key=lambda x: x[1]))
    if not ranking:
        return Identification(None)

    def verify(rule: Rule, variant: Variant | None = None) -> Evidence | None:
        tr = [dataclasses.replace(t, rule=rule) for t in plain]
        s = _Search(tr, max(budget - used, 1))
        if variant is None:
            if s.failing:
                return None
            return Evidence(0, 0, 0.0, max(c.max_error for c in s.ref), len(tr), sum(c.steps for c in s.ref))
        return s.evaluate(variant)

    seen: set[Rule] = set()
    for _, _, rule in sorted(exact, key=lambda x: (x[0], x[1])):
        if rule in seen:
            continue
        seen.add(rule)
        ev = verify(rule)
        if ev is not None:
            return Identification(rule, matched=True, max_error=ev.max_error, ranking=ranking)
    closest = [best[n][2] for n, _ in ranking[:3]]
    near: list[Rule] = []
    for rule in closest:
        lr = rule.hyper.get("lr")
        values = _lr_candidates(float(lr)) if isinstance(lr, float) and lr > 0 else [lr]
        for value in values:
            with contextlib.suppress(ValueError, TypeError):
                near.append(rule.replace(lr=value) if value != lr else rule)
    for rule in near:
        for cid, v in convention_variants(rule):
            ev = verify(rule, v)
            if ev is not None:
                return Identification(
                    v.apply(rule), (cid,), matched=True, max_error=ev.max_error, ranking=ranking
                )
    rule = closest[0]
    for bug, v in _singles(rule):
        if used >= budget:
            break
        used += 1
        ev = verify(rule, v)
        if ev is not None:
            return Identification(rule, bugs=(bug.id,), matched=True, max_error=ev.max_error, ranking=ranking)
    return Identification(rule, matched=False, max_error=ranking[0][1], ranking=ranking)
