"""The checking engine: evaluations, noise, steps, the error model, kinks, modes and localisation.

Everything here works on :class:`~optcheck.gradcheck._space.Space`'s flat float64 vector. A
*probe* is a perturbation ``x ± t·v`` where ``v`` is non-zero on a set of flat indices: one
coordinate (``v = max(1, |x_i|)·e_i``) or a random direction over a range of indices
(``v_i = max(1, |x_i|)·r_i`` with random signs ``r_i``). A probe's analytic value is
``grad · v`` and its numerical value the difference quotient, both divided by ``|v|`` for
directions (the derivative along the unit vector ``u = v/|v|``) and by ``v_i`` for coordinates.
The module docstring of :mod:`optcheck.gradcheck` describes the model in words.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._tree import describe
from ._report import Coverage, GradientEntry, GradientReport
from ._space import FloatArray, Space, is_torch_tensor, to_numpy

__all__ = ["Checker", "estimate_noise", "scalar_value"]

EPS = float(np.finfo(np.float64).eps)
KAPPA = 10.0  # "well beyond": a discrepancy must exceed kappa x the predicted error to fail
DEFAULT_RTOL = 1e-8  # the relative floor, a guard against an under-estimated error model
C_ANALYTIC = 10.0  # round-off of an analytic entry: C * eps(dtype) * (|g_i| + rms of its array)
C_COMPLEX = 4.0  # round-off of a complex-step derivative, in units of the relative noise of f
COMPLEX_STEP = 1e-20
FULL_LIMIT = 2000  # mode="auto" checks every entry up to this many, else directions + localisation
LEAF_SIZE = 4  # localisation checks ranges this small entry by entry
LOCALISE_LIMIT = 5  # entries localised per array before localisation stops
DEFAULT_SAMPLES = 10
DEFAULT_DIRECTIONS = 2
MIN_EVALUATIONS = 4  # the determinism check (2) and one central difference (2)
NOISY = 1e-10  # relative noise above which method="auto" prefers Richardson to central differences

# Richardson: central differences at h, 2h, 4h, 8h (h = t_richardson·2^k·max(1, |x_i|)) form a
# table whose third column is the O(h^8) extrapolant (4096 D(h) - 1344 D(2h) + 84 D(4h) - D(8h))/2835
R3_WEIGHTS = (4096.0 / 2835.0, -1344.0 / 2835.0, 84.0 / 2835.0, -1.0 / 2835.0)
RICH_MAX_SHIFTS = 6  # moves of one probe's window along the step grid (each costs 2 to 8 evaluations)
RICH_MAX_TOP = 0.5  # the largest step of a window is at most this times max(1, |x_i|)
REFINE = 8.0  # central differences take a third, balanced step where truncation > REFINE x round-off


def _noise_factor(weights: tuple[float, ...]) -> float:
    """Round-off of ``sum_m w_m D(2^m h)`` in units of ``sigma/h`` (that of ``D(h)``): ``D(2^m h)`` has ``2^-m``."""
    return math.sqrt(sum((w / 2.0**m) ** 2 for m, w in enumerate(weights)))


# noise multipliers of the finite-difference formulas, in units of nu = 2|c|·sigma = sigma/h
NU_CENTRAL = 1.0
NU_R1 = _noise_factor((4.0 / 3.0, -1.0 / 3.0))  # 1.35
NU_RICHARDSON = _noise_factor((64.0 / 45.0, -20.0 / 45.0, 1.0 / 45.0))  # 1.44
NU_R3 = _noise_factor(R3_WEIGHTS)  # 1.46
NU_ONE_SIDED = 2.55
NU_JUMP = 4.2

PASS, FAIL, KINK_PASS, KINK_FAIL, UNCHECKED = "pass", "fail", "kink-pass", "kink-fail", "unchecked"


class BudgetExhausted(Exception):
    """Raised inside the engine when ``max_evaluations`` is reached."""


class NotComplex(TypeError):
    """``f`` returned a real value for complex input."""


# ---------------------------------------------------------------------------------------------
# evaluating f
# ---------------------------------------------------------------------------------------------


def scalar_value(out: Any, what: str = "f(x)") -> tuple[complex, float]:
    """``out`` as a Python number, and the machine epsilon of the dtype it came in.

    Raises ``TypeError``/``ValueError`` naming what ``f`` returned when it is not a scalar number.
    """
    if isinstance(out, (bool, np.bool_)):
        raise TypeError(f"{what} returned a bool ({out}); expected a scalar loss (a float)")
    if isinstance(out, (int, float, complex)):
        return complex(out), EPS
    if is_torch_tensor(out):
        arr = to_numpy(out)
    else:
        if isinstance(out, (str, bytes)) or out is None:
            got = "None" if out is None else describe(out)
            raise TypeError(f"{what} returned {got}; expected a scalar loss (a float)")
        try:
            arr = np.asarray(out)
        except Exception:
            raise TypeError(f"{what} returned {describe(out)}; expected a scalar loss (a float)") from None
    if arr.dtype.kind not in "iufc":
        raise TypeError(f"{what} returned {describe(out)}; expected a scalar loss (a float)")
    if arr.size != 1:
        raise ValueError(
            f"{what} returned an array of shape {tuple(arr.shape)}; check_gradient needs f to return "
            "a scalar loss: reduce it (e.g. .sum() or .mean()), or use check_vjp to check a layer's "
            "backward with an upstream gradient"
        )
    value = arr.reshape(-1)[0].item()
    eps = float(np.finfo(arr.dtype).eps) if arr.dtype.kind in "fc" else EPS
    return complex(value), eps


def result_dtype(out: Any) -> np.dtype[Any] | None:
    """The floating dtype ``f`` computed its result in, when it says so (numpy or torch); else ``None``."""
    if is_torch_tensor(out):
        out = to_numpy(out)
    dt = getattr(out, "dtype", None)
    if isinstance(dt, np.dtype) and dt.kind in "fc":
        return dt
    return None


class Evaluator:
    """Calls ``f`` on flat vectors, counts the calls and enforces ``max_evaluations``.

    ``observed`` collects the floating dtypes of what ``f`` returned (numpy and torch results;
    a Python float says nothing), for the precision checks of the report.
    """

    def __init__(
        self, f: Callable[[Any], Any], space: Space, budget: int | None, observed: set[str] | None = None
    ) -> None:
        self.f = f
        self.space = space
        self.budget = budget
        self.count = 0
        self.result_eps = EPS
        self.observed: set[str] = set() if observed is None else observed

    def remaining(self) -> float:
        """Evaluations left (``inf`` without a budget)."""
        return math.inf if self.budget is None else self.budget - self.count

    def _call(self, tree: Callable[[], Any]) -> Any:
        if self.budget is not None and self.count >= self.budget:
            raise BudgetExhausted
        self.count += 1
        return self.f(tree())

    def real(self, vec: FloatArray) -> float:
        """``f`` at the real vector ``vec`` (``nan`` stays ``nan``: callers decide what it means)."""
        return self._real(lambda: self.space.tree(vec))

    def real_at(self, sel: slice | NDArray[np.intp], values: FloatArray) -> float:
        """``f`` at ``x`` with the entries ``sel`` set to ``values``."""
        return self._real(lambda: self.space.tree_at(sel, values))

    def _real(self, tree: Callable[[], Any]) -> float:
        out = self._call(tree)
        value, eps = scalar_value(out)
        dt = result_dtype(out)
        if dt is not None:
            self.observed.add(dt.name)
        self.result_eps = max(self.result_eps, eps)
        if value.imag != 0 and math.isfinite(value.imag):
            raise TypeError(f"f returned a complex value ({value}) for real x; expected a real scalar loss")
        return value.real

    def complex_at(self, sel: slice | NDArray[np.intp], imag: FloatArray) -> complex:
        """``f`` at ``x + 1j·imag`` on the entries ``sel`` (the caller handles any exception ``f`` raises)."""
        out = self._call(lambda: self.space.tree_at(sel, imag, imag=True))
        if isinstance(out, (int, float)) or (
            hasattr(out, "dtype") and getattr(out.dtype, "kind", "c") not in "c" and not is_torch_tensor(out)
        ):
            raise NotComplex("f returned a real value for complex input")
        if is_torch_tensor(out) and not out.is_complex():
            raise NotComplex("f returned a real tensor for complex input")
        value, _ = scalar_value(out)
        return value


# ---------------------------------------------------------------------------------------------
# noise (Moré & Wild's ECnoise)
# ---------------------------------------------------------------------------------------------


def ecnoise(fval: NDArray[np.float64]) -> tuple[float, int]:
    """Moré & Wild's ECnoise on values of f at equally spaced points along a line.

    Returns ``(noise, inform)``: ``inform`` 1 when the noise was estimated, 2 when the spacing
    is too small (half the first differences are zero), 3 when it is too large (no level
    where three consecutive difference orders agree and change sign).
    """
    fv = np.array(fval, dtype=np.float64)
    nf = fv.size
    m = nf - 1
    fmin, fmax = float(fv.min()), float(fv.max())
    top = max(abs(fmin), abs(fmax))
    if top > 0 and (fmax - fmin) / top > 0.1:
        return 0.0, 3
    gamma = 1.0
    levels = np.zeros(m)
    dsgn = np.zeros(m, dtype=bool)
    for j in range(m):
        fv[: m - j] = fv[1 : m - j + 1] - fv[: m - j]
        if j == 0 and np.count_nonzero(fv[:m] == 0) >= nf / 2:
            return 0.0, 2
        gamma *= 0.5 * (j + 1) / (2 * (j + 1) - 1)
        seg = fv[: m - j]
        levels[j] = math.sqrt(gamma * float(np.mean(seg**2)))
        dsgn[j] = float(seg.min()) * float(seg.max()) < 0
    if np.all(levels[2:] == 0):  # differences of order >= 3 vanish exactly: f is computed exactly here
        return 0.0, 1
    for k in range(m - 2):
        lo, hi = float(levels[k : k + 3].min()), float(levels[k : k + 3].max())
        if hi <= 4 * lo and dsgn[k]:
            return float(levels[k]), 1
    return 0.0, 3


def _ecnoise_line(
    ev: Evaluator, space: Space, delta: float, rng: np.random.Generator
) -> tuple[float, int] | None:
    """ECnoise on seven points ``x' + j·delta·v`` (``j = -3..3``), ``x' = x + 20·delta·w``.

    ``v`` and ``w`` have random signs and entries scaled by ``max(1, |x_i|)``. The line is offset
    from ``x`` so that it does not run through a kink sitting exactly at ``x`` (ReLU at 0).
    ``None`` when ``f`` is not finite on the line.
    """
    signs = np.array([-1.0, 1.0])
    v = space.scale * rng.choice(signs, size=space.n)
    w = space.scale * rng.choice(signs, size=space.n)
    idx = np.arange(space.n)
    vals = np.empty(7)
    for j in range(7):
        vec = space.round_to_leaf(idx, space.x + 20 * delta * w + (j - 3) * delta * v)
        vals[j] = ev.real(vec)
    if not np.all(np.isfinite(vals)):
        return None
    return ecnoise(vals)


def estimate_noise(
    ev: Evaluator, space: Space, f0: float, rng: np.random.Generator
) -> tuple[float | None, int]:
    """The noise of ``f`` near ``x`` (a standard deviation), or ``None`` when ECnoise found no level.

    Runs ECnoise (seven evaluations) along a random line near ``x`` with spacing
    ``delta = 1e-6`` (relative), moving ``delta`` by factors of 100 when it is too small (``f``
    quantised: half the differences are zero) or too large. A level well above the round-off of
    ``f``'s result dtype is then re-measured with ``delta/100`` on another line: real noise does
    not depend on the spacing, while a kink crossed by the line gives a level proportional to it;
    the smaller level wins. Returns the noise and the number of evaluations spent.
    """
    start = ev.count
    delta = 1e-6
    found: float | None = None
    for _ in range(3):
        out = _ecnoise_line(ev, space, delta, rng)
        if out is None:
            return None, ev.count - start
        noise, inform = out
        if inform == 1:
            found = noise
            break
        delta = delta * 100 if inform == 2 else delta / 100
        if not 1e-12 <= delta <= 1e-2:
            break
    if found is None:
        return None, ev.count - start
    suspicious = 100 * ev.result_eps * abs(f0)
    for _ in range(2):
        if found <= suspicious or delta / 100 < 1e-12:
            break
        delta /= 100
        out = _ecnoise_line(ev, space, delta, rng)
        if out is None or out[1] != 1:
            break  # too small a spacing for a quantised f: the coarser level stands
        if out[0] < found / 10:
            found = out[0]  # the level shrank with the spacing: a kink, not noise
        else:
            found = min(found, out[0])
            break
    return found, ev.count - start


# ---------------------------------------------------------------------------------------------
# probes and results
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Probe:
    """A perturbation direction over flat indices ``idx`` (one coordinate, or a random direction)."""

    idx: NDArray[np.intp]
    val: FloatArray
    leaf: int
    coordinate: bool
    norm: float = dataclasses.field(init=False)
    sel: slice | NDArray[np.intp] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", float(np.linalg.norm(self.val)))
        idx = self.idx
        contiguous = idx.size > 0 and int(idx[-1]) - int(idx[0]) == idx.size - 1
        object.__setattr__(self, "sel", slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx)

    def take(self, arr: NDArray[Any]) -> NDArray[Any]:
        """``arr`` at the probe's indices (a view when they form a range)."""
        return arr[self.sel]


@dataclasses.dataclass
class Result:
    """One judged probe (before it becomes a :class:`GradientEntry`)."""

    status: str
    analytic: float
    numeric: float
    predicted: float
    tolerance: float
    method: str
    step: float
    interval: tuple[float, float] | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, KINK_FAIL)

    @property
    def excess(self) -> float:
        if self.interval is not None:
            lo, hi = self.interval
            out = max(lo - self.analytic, self.analytic - hi, 0.0)
        else:
            out = abs(self.analytic - self.numeric)
        if self.tolerance > 0:
            return out / self.tolerance
        return 0.0 if out == 0 else math.inf


class _FD:
    """Real finite differences for one probe, evaluated lazily and cached, judged for any analytic value."""

    def __init__(self, chk: Checker, pr: Probe, method: str) -> None:
        self.chk = chk
        self.pr = pr
        self.method = method
        self.t: float = chk.t_central if method == "central" else chk.t_richardson
        self._pairs: dict[float, tuple[float, float, FloatArray]] = {}

    def pair(self, m: float) -> tuple[float, float, FloatArray]:
        """``(f(x + dp), f(x - dm), dp + dm)`` at step ``m·t`` (displacements after rounding)."""
        if m not in self._pairs:
            chk, pr = self.chk, self.pr
            base = pr.take(chk.space.x)
            step = m * self.t * pr.val
            xp = chk.space.round_to_leaf(pr.idx, base + step)
            xm = chk.space.round_to_leaf(pr.idx, base - step)
            fp = chk.ev.real_at(pr.sel, xp)
            fm = chk.ev.real_at(pr.sel, xm)
            self._pairs[m] = (fp, fm, (xp - base) + (base - xm))
        return self._pairs[m]

    def _scale(self, w2: FloatArray, m: float) -> float:
        if self.pr.coordinate:
            return 1.0 / float(w2[0])
        return 1.0 / (2.0 * m * self.t * self.pr.norm)

    def _analytic(self, g: FloatArray | None, a_fixed: float | None, w2: FloatArray, c: float) -> float:
        if a_fixed is not None:
            return a_fixed
        assert g is not None
        if self.pr.coordinate:
            return float(g[self.pr.idx[0]])
        return c * float(np.dot(self.pr.take(g), w2))

    def _stage(
        self, m: float, g: FloatArray | None, a_fixed: float | None
    ) -> tuple[float, float, float, float]:
        """``(a, d, c, e_an)`` at step ``m·t``."""
        fp, fm, w2 = self.pair(m)
        c = self._scale(w2, m)
        d = c * (fp - fm)
        a = self._analytic(g, a_fixed, w2, c)
        e_an = 0.0 if a_fixed is not None else self.chk.analytic_error(self.pr, w2, c)
        return a, d, c, e_an

    def judge(self, g: FloatArray | None = None, a_fixed: float | None = None, extra: float = 0.0) -> Result:
        step = self.t * (self.pr.norm if not self.pr.coordinate else float(self.pr.val[0]))
        if self.method != "central":
            return self._richardson(g, a_fixed, extra, step)
        chk = self.chk
        rho, sigma = chk.rtol, chk.sigma
        # a step that does not move a coordinate (far below its dtype's resolution) cannot be used
        if self._frozen(1):
            return self._below_resolution(step)
        a1, d1, c1, e_an = self._stage(1, g, a_fixed)
        if not math.isfinite(d1):
            return self._unchecked(1, step)
        nu = 2 * abs(c1) * sigma
        e1 = NU_CENTRAL * nu + e_an + extra
        tol1 = KAPPA * e1 + rho * max(abs(a1), abs(d1))
        # the round-off model alone explains the discrepancy: no need for a truncation estimate
        if abs(a1 - d1) <= KAPPA * e1 and not self._lopsided(c1, nu):
            return Result(PASS, a1, d1, e1, tol1, "central", step)
        m2 = 2.0
        a2, d2, _, _ = self._stage(m2, g, a_fixed)
        if not math.isfinite(d2):  # 2h leaves the domain of f (log near 0): estimate from h/2
            m2 = 0.5
            if self._frozen(m2):
                return self._verdict(a1, d1, e1, tol1, "central", step, note="f is not finite at the step 2h")
            a2, d2, _, _ = self._stage(m2, g, a_fixed)
            if not math.isfinite(d2):
                return self._verdict(
                    a1, d1, e1, tol1, "central", step, note="f is not finite at the step h/2"
                )
        # d(m·h) - d(h) = C·h²·(m² - 1): the truncation C·h² of d(h)
        trunc = abs((d2 - a2) - (d1 - a1)) / abs(m2 * m2 - 1.0)
        kink = self._kink(a1, c1, nu, trunc, e_an + extra, step, "central")
        if kink is not None:
            return kink
        if trunc > REFINE * NU_CENTRAL * nu:
            refined = self._refine(g, a_fixed, extra, step, d1 - a1, d2 - a2, m2, nu)
            if refined is not None:
                return refined
        e = NU_CENTRAL * nu + trunc + e_an + extra
        tol = KAPPA * e + rho * max(abs(a1), abs(d1))
        return self._verdict(a1, d1, e, tol, "central", step)

    def _frozen(self, m: float) -> bool:
        """Whether the step ``m·t`` does not move a coordinate probe's entry at all (below its resolution)."""
        return self.pr.coordinate and self.pair(m)[2][0] == 0

    def _below_resolution(self, step: float) -> Result:
        return Result(
            UNCHECKED,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            self.method,
            step,
            note="the step is below the resolution of this entry's dtype",
        )

    def _refine(
        self,
        g: FloatArray | None,
        a_fixed: float | None,
        extra: float,
        step: float,
        delta1: float,
        delta2: float,
        m2: float,
        nu: float,
    ) -> Result | None:
        """Central differences at a third step ``h* = m·h`` where round-off and truncation balance.

        At ``h`` the truncation ``C·h² = (d(m2·h) - d(h))/(m2² - 1)`` was measured from ``h`` and
        ``m2·h`` (``2h``, or ``h/2`` where ``f`` is not finite at ``2h``; ``delta1``, ``delta2``:
        numeric minus analytic there); its size ``trunc`` exceeds
        the round-off ``nu`` several times over, so ``f`` varies on a shorter scale than
        ``max(1, |x_i|)`` along this probe (logsumexp at inputs in the hundreds). The error
        ``nu/m + trunc·m²`` is smallest at ``m = (nu/(2·trunc))^(1/3)``. The truncation at ``h*``
        is predicted as ``trunc·m²``, and that prediction is checked: ``d(h) - d(h*)`` must be
        ``C·h²·(1 - m²)``, sign included, within half of it plus noise. ``None`` (the verdict at
        ``h`` stands) when it is not (``f`` does not behave like ``h²`` there: a kink within the
        step), when ``f`` is not finite at ``h*`` or when ``h*`` does not move the entry.
        """
        ch2 = (delta2 - delta1) / (m2 * m2 - 1.0)  # C·h²
        trunc = abs(ch2)
        m = (NU_CENTRAL * nu / (2.0 * trunc)) ** (1.0 / 3.0)
        if self._frozen(m):
            return None
        a3, d3, c3, e_an3 = self._stage(m, g, a_fixed)
        if not math.isfinite(d3):
            return None
        nu3 = 2 * abs(c3) * self.chk.sigma
        expected = ch2 * (1.0 - m * m)
        if abs((delta1 - (d3 - a3)) - expected) > 0.5 * abs(expected) + 2.0 * (nu + nu3):
            return None  # not the h² behaviour (a kink within the step?): the verdict at h stands
        e = NU_CENTRAL * nu3 + trunc * m * m + e_an3 + extra
        tol = KAPPA * e + self.chk.rtol * max(abs(a3), abs(d3))
        return self._verdict(a3, d3, e, tol, "central", step * m)

    def _richardson(self, g: FloatArray | None, a_fixed: float | None, extra: float, step: float) -> Result:
        """A Richardson table on central differences at ``h, 2h, 4h, 8h``, with step control.

        The steps lie on a grid ``h = 2^k·t·max(1, |x_i|)`` (``t = eps^(1/7)``). The table's
        columns are the central differences ``D`` (error ``O(h²)``), their extrapolants
        ``R1 = (4D(h) - D(2h))/3`` (``O(h^4)``), ``R2 = (16R1(h) - R1(2h))/15`` (``O(h^6)``) and
        ``R3 = (64R2(h) - R2(2h))/63`` (``O(h^8)``). In the asymptotic regime successive
        differences of the ``D`` shrink 4-fold and those of the ``R1`` 16-fold as the step halves;
        there the value is ``R3``, its truncation estimated, conservatively, by the error of
        ``R2(h)``: ``|R2(h) - R2(2h)|/63``. Another entry of the table (a lower order at a larger
        step, where ``f`` is nearly flat or polynomial along the probe) replaces it when its own
        estimate (truncation from its neighbours in the column, plus round-off) is below the
        round-off of ``R3`` alone. Where the ``R1`` do not converge 16-fold, the order (``R1`` or
        ``R2`` at ``h``) is chosen by the smaller estimate ``|R(h) - R(2h)|`` plus round-off,
        without the asymptotic divisor.

        Step control: where the ``D`` do not converge 4-fold the window moves down by a factor 4;
        where the truncation of ``R2`` exceeds the round-off of ``R3`` four times, down by the
        factor that balances the two (at most 8); where ``f`` is not finite, down by 4 (at most
        ``RICH_MAX_SHIFTS`` moves; central differences judge an entry where no window fits in the
        domain of ``f``). Each array (directions apart from entries) remembers where its
        last probe settled, one step lower where truncation still dominated, one step higher
        where it was a hundredth of the round-off and visible in the ``D``; so the first entries
        of an array find the scale on which ``f`` varies and the others start there, at 8
        evaluations each.
        """
        chk, pr = self.chk, self.pr
        rho, sigma = chk.rtol, chk.sigma
        key = (pr.leaf, pr.coordinate)
        k = chk.rich_k.get(key, chk.k_start)
        shifts = halved = 0
        while True:
            q = 2.0**k
            if self._frozen(q):
                return self._below_resolution(step * q)
            stages = [self._stage(q * 2.0**m, g, a_fixed) for m in range(4)]
            if not all(math.isfinite(st[1]) for st in stages):
                if shifts < RICH_MAX_SHIFTS and k > chk.k_min:
                    down = min(2, k - chk.k_min)
                    k, shifts, halved = k - down, shifts + 1, halved + down
                    continue
                # no window of the grid fits in the domain of f here: central differences, which
                # need only h and h/2, judge the entry
                res = _FD(chk, pr, "central").judge(g, a_fixed, extra)
                res.note = (res.note + "; " if res.note else "") + (
                    "f is not finite at Richardson's steps (8h): judged by central differences"
                )
                return res
            a1, _, c1, e_an = stages[0]
            deltas = [st[1] - st[0] for st in stages]
            nu = 2 * abs(c1) * sigma
            l0 = [deltas[m + 1] - deltas[m] for m in range(3)]
            flat = max(abs(l0[0]), abs(l0[1])) <= KAPPA * 2 * nu  # the D differ by noise only
            ok0 = flat or (l0[0] != 0 and 3.4 <= l0[1] / l0[0] <= 18.4)
            if not ok0 and shifts < RICH_MAX_SHIFTS and k - 2 >= chk.k_min:
                k, shifts, halved = k - 2, shifts + 1, halved + 2
                continue
            # f(x), f(x ± h), f(x ± 2h), f(x ± 4h) are at hand: the kink test costs nothing here
            kink = self._kink(
                a1, c1, nu, abs(l0[0]) / 3.0, e_an + extra, step * q, "richardson", q, grow=True
            )
            if kink is not None:
                return kink
            r1 = [(4.0 * deltas[m] - deltas[m + 1]) / 3.0 for m in range(3)]
            l1 = [r1[m + 1] - r1[m] for m in range(2)]
            ok1 = max(abs(l1[0]), abs(l1[1])) <= KAPPA * 2 * nu or (
                l1[0] != 0 and 8.0 <= l1[1] / l1[0] <= 32.0
            )
            r2 = [(16.0 * r1[m] - r1[m + 1]) / 15.0 for m in range(2)]
            asymptotic = ok0 and ok1
            # the truncation of R2(h) against the round-off of R3 steers the window
            t2, r3_round = abs(r2[0] - r2[1]) / 63.0, NU_R3 * nu
            if t2 > 4.0 * r3_round and shifts < RICH_MAX_SHIFTS and k > chk.k_min:
                down = round(math.log2(6.0 * t2 / r3_round) / 7.0)
                k, shifts = k - min(max(down, 1), 3, k - chk.k_min), shifts + 1
                continue
            break
        if asymptotic:
            # every entry of the table with its estimated error; the smallest wins (where f is
            # nearly flat or a low-order polynomial along the probe, a lower order at a larger
            # step has less round-off than R3 and no visible truncation)
            options = [(t2, r3_round, sum(w * d for w, d in zip(R3_WEIGHTS, deltas, strict=True)), 1.0)]
            for col, diffs, factor, nu_col in (
                (deltas, l0, 4.0, NU_CENTRAL),
                (r1, l1, 16.0, NU_R1),
                (r2, [r2[1] - r2[0]], 64.0, NU_RICHARDSON),
            ):
                for m, value in enumerate(col):
                    # its error from the differences with the next larger and next smaller step
                    est = [abs(diffs[m]) / (factor - 1.0)] if m < len(diffs) else []
                    est += [abs(diffs[m - 1]) * factor / (factor - 1.0)] if m > 0 else []
                    options.append((max(est), nu_col * nu / 2.0**m, value, 2.0**m))
        else:
            # not the asymptotic regime: the order with the smaller conservative estimate
            options = [
                (math.inf, math.inf, 0.0, 1.0),
                (abs(r1[0] - r1[1]), NU_R1 * nu, r1[0], 1.0),
                (abs(r2[0] - r2[1]), NU_RICHARDSON * nu, r2[0], 1.0),
            ]
        # R3's truncation estimate is conservative (the error of R2), so another entry must
        # beat R3's round-off alone
        trunc, round_off, delta_n, smallest = options[0]
        alt = min(options[1:], key=lambda o: o[0] + o[1])
        if not asymptotic or alt[0] + alt[1] < r3_round:
            trunc, round_off, delta_n, smallest = alt
        if t2 > r3_round:
            nxt = k - 1
        elif asymptotic and not flat and t2 < r3_round / 100.0:
            nxt = k + 1
        else:
            nxt = k
        chk.rich_k[key] = min(max(nxt, chk.k_min), chk.k_max)
        dr = a1 + delta_n
        e = round_off + trunc + e_an + extra
        tol = KAPPA * e + rho * max(abs(a1), abs(dr))
        note = f"steps halved {halved} times for the extrapolation to hold" if halved else ""
        return self._verdict(a1, dr, e, tol, "richardson", step * q * smallest, note=note)

    def _lopsided(self, c1: float, nu: float) -> bool:
        """Whether the one-sided differences at h disagree enough to suspect a kink (worth 2h more)."""
        fp, fm, _ = self.pair(1)
        f0 = self.chk.f0
        fwd, bwd = 2 * c1 * (fp - f0), 2 * c1 * (f0 - fm)
        # smooth f: fwd - bwd = h·f'' (+ noise of about 2.45 nu); a kink: the jump in slope
        return abs(fwd - bwd) > KAPPA * 2.45 * nu + 1e-3 * max(abs(fwd), abs(bwd))

    def _unchecked(self, m: int, step: float) -> Result:
        return Result(
            UNCHECKED,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            self.method,
            step,
            note=f"f is not finite within the step ({'h' if m == 1 else f'{m}h'})",
        )

    @staticmethod
    def _verdict(
        a: float, d: float, e: float, tol: float, method: str, step: float, note: str = ""
    ) -> Result:
        return Result(PASS if abs(a - d) <= tol else FAIL, a, d, e, tol, method, step, note=note)

    def _kink(
        self,
        a: float,
        c1: float,
        nu: float,
        trunc: float,
        e_an: float,
        step: float,
        method: str,
        q: float = 1.0,
        grow: bool = False,
    ) -> Result | None:
        """One-sided second-order derivatives from f(x), f(x ± h), f(x ± 2h); a kink when they disagree.

        ``h`` is ``q`` times the base step; ``c1`` the scale of the central difference at ``h``.
        For a smooth f their difference is ``O(h³)``; with ``grow`` (``f(x ± 4h)`` at hand), the
        same difference at twice the step must also not grow like ``h³`` (8-fold): a kink's
        jump stays the same size whatever the step, a smooth f's curvature does not.
        """
        f0 = self.chk.f0

        def one_sided(m: float) -> tuple[float, float]:
            fp1, fm1, _ = self.pair(m)
            fp2, fm2, _ = self.pair(2 * m)
            scale = c1 * q / m
            return scale * (-3 * f0 + 4 * fp1 - fp2), scale * (3 * f0 - 4 * fm1 + fm2)

        fwd, bwd = one_sided(q)
        if not (math.isfinite(fwd) and math.isfinite(bwd)):
            return None
        rho = self.chk.rtol
        jump = fwd - bwd
        if abs(jump) <= KAPPA * (NU_JUMP * nu + trunc) + rho * max(abs(fwd), abs(bwd)):
            return None
        if grow:
            fwd2, bwd2 = one_sided(2 * q)
            if abs(fwd2 - bwd2) > 4.0 * abs(jump):
                return None
        fp1, fm1, _ = self.pair(q)
        lo, hi = min(fwd, bwd), max(fwd, bwd)
        e = NU_ONE_SIDED * nu + e_an
        slack = KAPPA * e + rho * max(abs(lo), abs(hi))
        ok = lo - slack <= a <= hi + slack
        side = "right" if a > hi else "left"
        note = (
            ""
            if ok
            else (
                f"f has a kink within the step; the analytic value lies outside the one-sided "
                f"derivatives {bwd:.6g} (left) and {fwd:.6g} (right), to the {side}"
            )
        )
        central = c1 * (fp1 - fm1)
        return Result(KINK_PASS if ok else KINK_FAIL, a, central, e, slack, method, step, (lo, hi), note)


# ---------------------------------------------------------------------------------------------
# the checker
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Record:
    """A judged probe with where it belongs."""

    probe: Probe
    result: Result
    lo: int = 0
    hi: int = 0


class Checker:
    """One run of the gradient checker (see :func:`optcheck.gradcheck.check_gradient`)."""

    def __init__(
        self,
        f: Callable[[Any], Any],
        space: Space,
        g: FloatArray,
        geps: FloatArray,
        grms: FloatArray,
        *,
        method: str,
        mode: str,
        samples: int | None,
        directions: int | None,
        rtol: float | None,
        seed: int | np.random.Generator,
        max_evaluations: int | None,
        observed: set[str] | None = None,
        notes: list[str] | None = None,
        grad_label: Callable[[str], str] | None = None,
    ) -> None:
        self.space = space
        self.g, self.geps, self.grms = g, geps, grms
        self.method_asked, self.mode_asked = method, mode
        self.samples, self.directions = samples, directions
        self.rtol = DEFAULT_RTOL if rtol is None else float(rtol)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.ev = Evaluator(f, space, max_evaluations, observed)
        self.f0 = math.nan
        self.sigma = 0.0
        self.eps_f = EPS
        self.t_central: float = EPS ** (1 / 3)
        self.t_richardson: float = EPS ** (1 / 7)
        self.k_min, self.k_start, self.k_max = -10, 0, 3  # Richardson's step grid (set with the noise)
        self.rich_k: dict[tuple[int, bool], int] = {}  # where each array's last Richardson probe settled
        self.method = "central"
        self.method_reason = ""
        self.notes: list[str] = [*space.notes, *(notes or [])]
        self._grad_label = grad_label
        self.records: list[_Record] = []  # coordinates
        self.dir_records: list[_Record] = []  # directions
        self.group_failures: list[_Record] = []
        self.coverage_notes: dict[int, list[str]] = {}
        self.complete = True
        self.complex_disagreed = 0
        self.complex_kinks = False  # f(x - ih·u) is not the conjugate of f(x + ih·u): kinks at x
        self.complex_kink_count = 0
        self.complex_confirmed = 0
        self.grad_name = "grad"

    def grad_label(self, key: str) -> str:
        """How hints name the gradient of the array ``key`` (``grad['W1']``, ``dW1``)."""
        if self._grad_label is not None:
            return self._grad_label(key)
        return key.replace(self.space.name, self.grad_name, 1)

    def _precision(self) -> None:
        """The precision the analytic gradient was computed in, and a warning for mixed precision.

        A gradient returned as float64 may have been computed in float32: the round-off allowance
        of each analytic entry uses the epsilon of the least precise of its returned dtype, the
        dtype its entry of ``x`` is handed to ``f`` in, the dtype ``f`` returns, and the precision
        the measured noise of ``f`` shows (float32's for a relative noise above ``1e-10``,
        float16's above ``1e-5``).
        """
        observed = self.ev.observed
        low = self.space.low_precision
        if low and "float64" in observed:
            kinds = sorted({str(leaf.dtype) for leaf in self.space.leaves if leaf.dtype != np.float64})
            warnings.warn(
                f"{self.space.name} is handed to f as {'/'.join(kinds)}, but f returned a float64 result: part "
                "of the computation runs in float64 (a float64 constant or data array, np.float64 casts), so "
                "f and the gradient may not be computed in the same precision; cast the data to the "
                "parameters' dtype (or, with check_gradient, pass keep_dtype=False to check in float64)",
                UserWarning,
                stacklevel=5,  # the user's call of check_gradient, check_layer, check_vjp or check_torch
            )
        eps = self.space.input_eps()
        found = [float(np.finfo(np.dtype(name)).eps) for name in observed]
        if found:
            eps = np.maximum(eps, max(found))
        if self.eps_f > 1e-5:
            eps = np.maximum(eps, float(np.finfo(np.float16).eps))
        elif self.eps_f > NOISY:
            eps = np.maximum(eps, float(np.finfo(np.float32).eps))
        raised = eps > self.geps
        if np.any(raised):
            self.geps = np.maximum(self.geps, eps)
            top = float(np.max(eps[raised]))
            name = {float(np.finfo(t).eps): t.__name__ for t in (np.float16, np.float32, np.float64)}.get(
                top, f"eps {top:.1e}"
            )
            self.notes.append(
                f"the gradient was computed at {name} precision (the dtype of x, of f's result or the measured "
                f"noise of f say so), though {int(np.count_nonzero(raised))} of its entries came in a more "
                "precise dtype: their round-off allowance is " + name + "'s"
            )

    # -- error model pieces ------------------------------------------------------------------
    def analytic_error(self, pr: Probe, w2: FloatArray, c: float) -> float:
        """Round-off of the analytic value along the probe.

        Per entry ``C·eps(dtype)·(|g_i| + rms of its array + |f(x)|/(n·max(1, |x_i|)))``: relative to
        the entry and to its array, plus an absolute part at the scale of ``f`` spread over its
        ``n`` parameters, for entries that come out of a cancellation (``1 - tanh(z)**2`` at a
        saturated unit is exactly 0 in floating point). Along a direction, the relative parts add
        up and the absolute part adds up in quadrature (independent errors).
        """
        eps = pr.take(self.geps)
        terms = eps * (np.abs(pr.take(self.g)) + pr.take(self.grms)) * np.abs(w2)
        total = float(np.sum(terms[np.isfinite(terms)]))
        spread = abs(self.f0) / self.space.n
        total += spread * float(np.sqrt(np.sum((eps * w2 / pr.take(self.space.scale)) ** 2)))
        return C_ANALYTIC * abs(c) * total

    def complex_error(self, pr: Probe, d: float, w: FloatArray, c: float) -> float:
        """Round-off of a complex-step derivative: C·(relative noise of f)·(|d| + scale of the arrays)."""
        scale = abs(c) * float(np.sum(pr.take(self.grms) * np.abs(w)))
        return C_COMPLEX * self.eps_f * (abs(d) + scale)

    # -- probes --------------------------------------------------------------------------------
    def coordinate(self, i: int) -> Probe:
        return Probe(
            np.array([i], dtype=np.intp), np.array([self.space.scale[i]]), self.space.leaf_of(i), True
        )

    def direction(self, leaf: int, lo: int, hi: int) -> Probe:
        idx = np.arange(lo, hi, dtype=np.intp)
        idx = idx[self.finite_g[lo:hi]]
        signs = self.rng.choice(np.array([-1.0, 1.0]), size=idx.size)
        return Probe(idx, self.space.scale[idx] * signs, leaf, False)

    def judge(self, pr: Probe) -> Result:
        """The numerical check of one probe with the chosen method (complex step confirmed by central)."""
        if self.method != "complex-step":
            return _FD(self, pr, self.method).judge(self.g)
        space = self.space
        w = space.round_to_leaf(pr.idx, COMPLEX_STEP * pr.val)
        step = COMPLEX_STEP * (float(pr.val[0]) if pr.coordinate else pr.norm)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fc = self.ev.complex_at(pr.sel, w)
        except BudgetExhausted:
            raise
        except Exception:
            fc = complex(math.nan, math.nan)
        fd = _FD(self, pr, "central")
        if not (math.isfinite(fc.real) and math.isfinite(fc.imag)):
            res = fd.judge(self.g)
            res.note = (res.note + "; " if res.note else "") + "f was not finite for complex input here"
            return res
        c = 1.0 / float(w[0]) if pr.coordinate else 1.0 / (COMPLEX_STEP * pr.norm)
        d = c * fc.imag
        a = float(self.g[pr.idx[0]]) if pr.coordinate else c * float(np.dot(pr.take(self.g), w))
        e_cs = self.complex_error(pr, d, w, c)
        e_an = self.analytic_error(pr, 2 * w, 0.5 * c)
        e = e_cs + e_an
        tol = KAPPA * e + self.rtol * max(abs(a), abs(d))
        if self.complex_kinks and pr.coordinate:
            kink = self._complex_kink(pr, w, c, a, d, e_cs, e_an, step)
            if kink is not None:
                return kink
        if abs(a - d) <= tol:
            return Result(PASS, a, d, e, tol, "complex-step", step)
        # a disagreement: is the complex step trustworthy here? ask real central differences
        check = fd.judge(a_fixed=d, extra=e_cs)
        if check.status == PASS:
            self.complex_confirmed += 1
            return Result(FAIL, a, d, e, tol, "complex-step", step)
        real = fd.judge(self.g)
        if check.status in (KINK_PASS, KINK_FAIL):
            return real
        self.complex_disagreed += 1
        real.note = (real.note + "; " if real.note else "") + (
            f"the complex step gave {d:.6g}, which central differences contradict: judged by central differences"
        )
        return real

    def _complex_kink(
        self, pr: Probe, w: FloatArray, c: float, a: float, d: float, e_cs: float, e_an: float, step: float
    ) -> Result | None:
        """The left-hand derivative by the complex step at ``-ih``; a kink when it differs from ``d``."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fm = self.ev.complex_at(pr.sel, -w)
        except BudgetExhausted:
            raise
        except Exception:
            return None
        d_left = -c * fm.imag + 0.0  # + 0.0: no negative zero in the report
        if not math.isfinite(d_left):
            return None
        e_left = self.complex_error(pr, d_left, w, c)
        if abs(d - d_left) <= KAPPA * (e_cs + e_left) + self.rtol * max(abs(d), abs(d_left)):
            return None
        self.complex_kink_count += 1
        lo, hi = min(d, d_left), max(d, d_left)
        e = max(e_cs, e_left) + e_an
        slack = KAPPA * e + self.rtol * max(abs(lo), abs(hi))
        ok = lo - slack <= a <= hi + slack
        note = (
            ""
            if ok
            else (
                f"f has a kink at x; the analytic value lies outside the one-sided derivatives {d_left:.6g} "
                f"(left) and {d:.6g} (right), to the {'right' if a > hi else 'left'}"
            )
        )
        return Result(
            KINK_PASS if ok else KINK_FAIL,
            a,
            0.5 * (d + d_left),
            e,
            slack,
            "complex-step",
            step,
            (lo, hi),
            note,
        )

    # -- set-up: determinism, noise, method ------------------------------------------------------
    def _start(self) -> GradientReport | None:
        space, ev = self.space, self.ev
        fa = ev.real(space.x.copy())
        if not math.isfinite(fa):
            raise ValueError(
                f"f(x) is {fa} at the given {space.name}; the gradient can only be checked where the loss is "
                "finite (look for log(0), a division by zero or an overflow in the forward pass)"
            )
        fb = ev.real(space.x.copy())
        self.f0 = fa
        diff = abs(fa - fb)
        if diff > math.sqrt(ev.result_eps) * max(abs(fa), abs(fb)):
            return self._nondeterministic(fa, fb)
        self.diff0 = diff
        return None

    def _nondeterministic(self, fa: float, fb: float) -> GradientReport:
        msg = (
            f"f is not deterministic: two calls at the same x returned {fa!r} and {fb!r}. A random "
            "element inside f (dropout with a fresh mask, sampling, a shuffled batch, a changing global) "
            "makes every finite difference meaningless; fix it for the check (a fixed seed or mask inside "
            "f, or model.eval()) and check again."
        )
        cov = tuple(Coverage(self.space.key(i), leaf.size) for i, leaf in enumerate(self.space.leaves))
        return GradientReport(
            passed=False,
            failures=(),
            nondifferentiable=(),
            evaluations=self.ev.count,
            max_rel_error=math.nan,
            method="-",
            method_reason="not chosen: f is not deterministic",
            mode="-",
            mode_reason="-",
            step="-",
            f_value=fa,
            noise=math.nan,
            kappa=KAPPA,
            rtol=self.rtol,
            coverage=cov,
            complete=False,
            message=msg,
        )

    def _noise(self) -> None:
        ev = self.ev
        floor = 0.5 * ev.result_eps * abs(self.f0)
        if ev.remaining() >= 21 + 2 * len(self.space.leaves) + 4:
            noise, _ = estimate_noise(ev, self.space, self.f0, self.rng)
        else:
            noise = None
            self.notes.append(
                "the evaluation budget is too small to measure the noise of f; assumed round-off"
            )
        if noise is None:
            noise = ev.result_eps * abs(self.f0)
            if ev.remaining() >= 18:
                self.notes.append(
                    "could not measure the noise of f along a random line (ECnoise found no level); "
                    "assumed the round-off of its result dtype"
                )
        self.sigma = max(noise, floor, self.diff0)
        if self.diff0 > 0:
            self.notes.append(
                f"two calls of f at x differed by {self.diff0:.1e} (below the nondeterminism threshold); "
                "treated as noise"
            )
        if self.sigma == 0:
            self.sigma = EPS * max(abs(self.f0), 1e-300)
        rel = self.sigma / abs(self.f0) if self.f0 != 0 else EPS
        self.eps_f = min(max(rel, EPS), 1e-3)
        if rel > 1e-3:
            self.notes.append(
                f"f is very noisy (noise {rel:.1e} relative to |f(x)|); finite differences are unreliable at any step"
            )
        self.t_central = self.eps_f ** (1 / 3)
        self.t_richardson = self.eps_f ** (1 / 7)
        # Richardson's steps 2^k·t_richardson: the largest of a window (8h) at most RICH_MAX_TOP,
        # the smallest no smaller than the central step (below it, extrapolation only adds noise)
        self.k_max = math.floor(math.log2(RICH_MAX_TOP / (8.0 * self.t_richardson)))
        self.k_min = min(math.floor(math.log2(self.t_central / self.t_richardson)), self.k_max)
        self.k_start = min(0, self.k_max)

    def _choose_method(self) -> None:
        asked = self.method_asked
        if asked in ("central", "richardson"):
            self.method = asked
            self.method_reason = "as asked"
            return
        budget_ok = self.ev.remaining() >= 8 + 2 * len(self.space.leaves)
        if asked == "auto" and not budget_ok:
            self.method, self.method_reason = (
                "central",
                "the evaluation budget is too small to try the complex step",
            )
            return
        ok, why = self._probe_complex()
        if ok:
            self.method = "complex-step"
            self.method_reason = ("as asked; " if asked == "complex-step" else "") + (
                "f accepts complex input and its complex-step derivative matched central differences "
                "along a random direction"
            )
            return
        if asked == "complex-step":
            raise ValueError(
                f"method='complex-step' needs f to accept complex x and carry the perturbation through "
                f"analytically, but {why}; use method='central' or 'richardson' for this f"
            )
        if self.eps_f > NOISY:
            self.method = "richardson"
            self.method_reason = (
                f"f is noisy (relative noise {self.eps_f:.1e}), where Richardson's larger step keeps "
                f"round-off small, and the complex step is not usable: {why}"
            )
        else:
            self.method = "central"
            self.method_reason = f"the complex step is not usable: {why}"

    def _probe_complex(self) -> tuple[bool, str]:
        space = self.space
        n = space.n
        pr = Probe(
            np.arange(n, dtype=np.intp),
            space.scale * self.rng.choice(np.array([-1.0, 1.0]), size=n),
            0,
            False,
        )
        w = space.round_to_leaf(pr.idx, COMPLEX_STEP * pr.val)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fc = self.ev.complex_at(pr.sel, w)
        except BudgetExhausted:
            raise
        except NotComplex:
            return False, (
                "f returned a real number for complex input (a cast to a real dtype, abs(), .real "
                "or float() drops the imaginary part)"
            )
        except Exception as exc:
            return False, f"f raised {type(exc).__name__} for complex input ({exc})"
        if not (math.isfinite(fc.real) and math.isfinite(fc.imag)):
            return False, f"f(x + ih·u) is {fc}"
        if abs(fc.real - self.f0) > KAPPA * self.sigma + 1e-6 * abs(self.f0):
            return False, f"the real part of f(x + ih·u) ({fc.real!r}) differs from f(x) ({self.f0!r})"
        c = 1.0 / (COMPLEX_STEP * pr.norm)
        d = c * fc.imag
        e_cs = self.complex_error(pr, d, w, c)
        check = _FD(self, pr, "central").judge(a_fixed=d, extra=e_cs)
        if check.status in (PASS, KINK_PASS):
            self._probe_conjugate(pr, w, fc, c, e_cs)
            return True, ""
        return False, (
            f"its complex-step derivative along a random direction ({d:.6g}) disagrees with central "
            f"differences ({check.numeric:.6g}): abs(), conj() or a comparison inside f is not complex-analytic"
        )

    def _probe_conjugate(self, pr: Probe, w: FloatArray, fc: complex, c: float, e_cs: float) -> None:
        """Whether ``f`` has kinks exactly at ``x``, seen by the complex step (one evaluation).

        For a real-analytic ``f``, ``f(x - ih·u)`` is the conjugate of ``f(x + ih·u)``. At a kink
        sitting exactly at ``x`` (ReLU of an exact zero, a tie in a max), ``max``/``where`` on
        complex numbers break the tie by the sign of the imaginary part, so ``+ih`` takes the
        right-hand branch and ``-ih`` the left-hand one, and the two differ. Then every entry
        checked by the complex step is also evaluated at ``-ih``: the two values are its right-
        and left-hand derivatives, and an entry where they differ is a kink (the analytic value
        passes between them).
        """
        if self.ev.remaining() < 2 * self.space.n:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fm = self.ev.complex_at(pr.sel, -w)
        except BudgetExhausted:
            raise
        except Exception:
            return
        if not (math.isfinite(fm.real) and math.isfinite(fm.imag)):
            return
        if abs(c * (fc.imag + fm.imag)) > KAPPA * e_cs:
            self.complex_kinks = True
            self.notes.append(
                "f(x - ih·u) is not the conjugate of f(x + ih·u): f has kinks exactly at x (ReLU at exact "
                "zeros, ties in a max), where the complex step takes the right-hand derivative; every "
                "entry was therefore also evaluated at -ih, giving its left-hand derivative"
            )

    # -- modes -------------------------------------------------------------------------------
    def _choose_mode(self) -> tuple[str, str]:
        asked, n = self.mode_asked, self.space.n
        if asked != "auto":
            return asked, "as asked"
        if self.samples is not None:
            return "sample", "samples= was given"
        if self.directions is not None:
            return "directional", "directions= was given"
        per = {"complex-step": 1, "central": 2, "richardson": 8}[self.method]
        if n <= FULL_LIMIT and per * n <= self.ev.remaining():
            return "full", f"{n} entries <= {FULL_LIMIT}: every entry is checked"
        if n <= FULL_LIMIT:
            return "directional", f"checking all {n} entries would exceed max_evaluations"
        return "directional", f"{n} entries > {FULL_LIMIT}: random directions, then localisation of failures"

    def _round_robin(self, per_leaf: list[NDArray[np.intp]]) -> list[int]:
        order: list[int] = []
        longest = max((len(p) for p in per_leaf), default=0)
        for k in range(longest):
            order.extend(int(p[k]) for p in per_leaf if k < len(p))
        return order

    def _check_coordinates(self, order: list[int]) -> None:
        for i in order:
            if not self.finite_g[i]:
                continue
            pr = self.coordinate(i)
            self.records.append(_Record(pr, self.judge(pr)))

    def _full(self) -> None:
        per_leaf = [np.arange(leaf.offset, leaf.stop) for leaf in self.space.leaves]
        self._check_coordinates(self._round_robin(per_leaf))

    def _sample(self) -> None:
        k = self.samples or DEFAULT_SAMPLES
        per_leaf = []
        for i, leaf in enumerate(self.space.leaves):
            if leaf.size <= k:
                per_leaf.append(np.arange(leaf.offset, leaf.stop))
            else:
                pick = np.sort(self.rng.choice(leaf.size, size=k, replace=False)) + leaf.offset
                per_leaf.append(pick)
                self.coverage_notes.setdefault(i, []).append("a random sample")
        self._check_coordinates(self._round_robin(per_leaf))

    def _test_range(self, leaf: int, lo: int, hi: int) -> _Record | None:
        pr = self.direction(leaf, lo, hi)
        if pr.idx.size == 0:
            return None
        rec = _Record(pr, self.judge(pr), lo, hi)
        self.dir_records.append(rec)
        return rec

    def _directional(self) -> None:
        k = self.directions or DEFAULT_DIRECTIONS
        leaves = self.space.leaves
        small = [i for i, leaf in enumerate(leaves) if leaf.size <= LEAF_SIZE]
        big = [i for i, leaf in enumerate(leaves) if leaf.size > LEAF_SIZE]
        self._check_coordinates(
            self._round_robin([np.arange(leaves[i].offset, leaves[i].stop) for i in small])
        )
        failing: dict[int, _Record] = {}
        for _ in range(k):
            for i in big:
                rec = self._test_range(i, leaves[i].offset, leaves[i].stop)
                if (
                    rec is not None
                    and rec.result.failed
                    and (i not in failing or rec.result.excess > failing[i].result.excess)
                ):
                    failing[i] = rec
        for i in sorted(failing, key=lambda j: -failing[j].result.excess):
            self._localise(i, failing[i])

    def _localise(self, leaf: int, root: _Record) -> None:
        """Group testing: split a failing range in halves, test each along a fresh random direction, recurse."""
        found_before = sum(1 for r in self.records if r.result.failed)
        tests_before = len(self.dir_records)
        stack = [root]
        localised = 0
        while stack and localised < LOCALISE_LIMIT:
            node = stack.pop()
            lo, hi = node.lo, node.hi
            if hi - lo <= LEAF_SIZE:
                self._check_coordinates(list(range(lo, hi)))
                new = sum(1 for r in self.records if r.result.failed) - found_before - localised
                if new <= 0:
                    self.group_failures.append(node)
                localised += max(new, 0)
                continue
            mid = (lo + hi) // 2
            children = [r for r in (self._test_range(leaf, lo, mid), self._test_range(leaf, mid, hi)) if r]
            bad = sorted((r for r in children if r.result.failed), key=lambda r: r.result.excess)
            if not bad:
                self.group_failures.append(node)
                continue
            stack.extend(bad)  # the worst half is popped first
        tests = len(self.dir_records) - tests_before
        text = (
            f"group testing ({tests} of the directional checks, on halves) localised {localised} bad "
            f"entr{'y' if localised == 1 else 'ies'}"
        )
        if stack:
            text += ", then stopped: more halves disagree (the discrepancy is spread over the array)"
        self.coverage_notes.setdefault(leaf, []).append(text)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> GradientReport:
        self.finite_g = np.isfinite(self.g)
        self.diff0 = 0.0
        stopped = self._start()
        if stopped is not None:
            return stopped
        mode, mode_reason = "-", ""
        try:
            self._noise()
            self._precision()
            self._choose_method()
            mode, mode_reason = self._choose_mode()
            {"full": self._full, "sample": self._sample, "directional": self._directional}[mode]()
        except BudgetExhausted:
            self.complete = False
            self.notes.append(
                f"max_evaluations={self.ev.budget} was reached before the check finished; "
                "the coverage lines say what was checked"
            )
        return self._report(mode, mode_reason)

    # -- the report -----------------------------------------------------------------------------
    def _entry(self, rec: _Record, floor_scale: float) -> GradientEntry:
        r, pr, space = rec.result, rec.probe, self.space
        leaf = space.leaves[pr.leaf]
        if r.interval is not None:
            lo, hi = r.interval
            abs_err = max(lo - r.analytic, r.analytic - hi, 0.0)
            mag = max(abs(r.analytic), abs(lo), abs(hi))
        else:
            abs_err = abs(r.analytic - r.numeric)
            mag = max(abs(r.analytic), abs(r.numeric))
        floor = KAPPA * r.predicted if math.isfinite(r.predicted) else 0.0
        if pr.coordinate:
            floor = max(floor, floor_scale)
        denom = max(mag, floor)
        rel = abs_err / denom if denom > 0 else (0.0 if abs_err == 0 else math.inf)
        return GradientEntry(
            key=space.key(pr.leaf),
            index=space.index_of(int(pr.idx[0])) if pr.coordinate else None,
            analytic=r.analytic,
            numeric=r.numeric,
            abs_error=abs_err,
            rel_error=rel,
            predicted_error=r.predicted,
            tolerance=r.tolerance,
            method=r.method,
            step=r.step,
            interval=r.interval,
            entries=None if pr.coordinate else (rec.lo - leaf.offset, rec.hi - leaf.offset),
            note=r.note,
        )

    def _report(self, mode: str, mode_reason: str) -> GradientReport:
        space = self.space
        scales = []
        for leaf in space.leaves:
            seg = self.g[leaf.offset : leaf.stop]
            fin = seg[np.isfinite(seg)]
            scales.append(1e-3 * float(np.max(np.abs(fin))) if fin.size else 0.0)
        coord_entries: list[tuple[int, GradientEntry, str]] = []
        for rec in self.records:
            coord_entries.append(
                (rec.probe.leaf, self._entry(rec, scales[rec.probe.leaf]), rec.result.status)
            )
        dir_entries = [(rec.probe.leaf, self._entry(rec, 0.0), rec.result.status) for rec in self.dir_records]
        group_keys = {id(rec) for rec in self.group_failures}
        failures: list[GradientEntry] = []
        kinks: list[GradientEntry] = []
        for _, e, status in coord_entries:
            if status in (FAIL, KINK_FAIL):
                failures.append(e)
            elif status == KINK_PASS:
                kinks.append(e)
        # non-finite analytic entries are failures without any evaluation
        for flat in np.flatnonzero(~self.finite_g):
            i = int(flat)
            failures.append(
                GradientEntry(
                    key=space.key(space.leaf_of(i)),
                    index=space.index_of(i),
                    analytic=float(self.g[i]),
                    numeric=math.nan,
                    abs_error=math.inf,
                    rel_error=math.inf,
                    predicted_error=math.nan,
                    tolerance=0.0,
                    method="-",
                    note="the analytic gradient is not finite here",
                )
            )
        # directional failures that localisation did not turn into entries
        localised_leaves = {lf for lf, _, status in coord_entries if status in (FAIL, KINK_FAIL)}
        for rec in self.group_failures:
            e = self._entry(rec, 0.0)
            note = "neither half of this range shows the discrepancy on its own (it is spread over the range)"
            failures.append(dataclasses.replace(e, note=(e.note + "; " if e.note else "") + note))
        for rec, (lf, e, status) in zip(self.dir_records, dir_entries, strict=True):
            if status in (FAIL, KINK_FAIL) and lf not in localised_leaves and id(rec) not in group_keys:
                if not any(f.key == e.key and f.index is None for f in failures):
                    why = (
                        "not localised: max_evaluations was reached" if not self.complete else "not localised"
                    )
                    failures.append(dataclasses.replace(e, note=(e.note + "; " if e.note else "") + why))
            elif status == KINK_PASS:
                kinks.append(e)
        failures.sort(key=lambda e: (-e.rel_error, -e.abs_error))
        all_entries = [e for _, e, s in coord_entries if s in (PASS, FAIL)] + [
            e for _, e, s in dir_entries if s in (PASS, FAIL)
        ]
        rels = [e.rel_error for e in all_entries if math.isfinite(e.rel_error)]
        max_rel = max(rels) if rels else 0.0
        if any(not math.isfinite(e.rel_error) for e in failures):
            max_rel = math.inf
        # coverage per array
        cov = []
        for i, this in enumerate(space.leaves):
            coords = [s for lf, _, s in coord_entries if lf == i]
            dirs = [s for lf, _, s in dir_entries if lf == i]
            unchecked = sum(1 for s in coords if s == UNCHECKED)
            if unchecked:
                self.complete = False
            cov.append(
                Coverage(
                    key=space.key(i),
                    size=this.size,
                    coordinates=len(coords) - unchecked,
                    directions=len(dirs) - sum(1 for s in dirs if s == UNCHECKED),
                    directions_failed=sum(1 for s in dirs if s in (FAIL, KINK_FAIL)),
                    unchecked=unchecked,
                    note="; ".join(self.coverage_notes.get(i, [])),
                )
            )
        # the worst entries of each array, for the table
        worst: list[GradientEntry] = []
        for i in range(len(space.leaves)):
            mine = [e for lf, e, s in coord_entries if lf == i and s != UNCHECKED]
            mine += [e for lf, e, s in dir_entries if lf == i and s != UNCHECKED]
            # failing entries first, then failing directions, then the rest, each by excess
            mine.sort(key=lambda e: (e.passed, e.index is None, -e.rel_error if not e.passed else -e.excess))
            worst.extend(mine[:3])
        numeric = np.full(space.n, math.nan)
        for rec in self.records:
            if rec.result.status != UNCHECKED:
                numeric[int(rec.probe.idx[0])] = rec.result.numeric
        notes = list(self.notes)
        if self.complex_confirmed:
            notes.append(
                f"central differences confirmed the complex-step values of all {self.complex_confirmed} "
                f"failing check{'s' if self.complex_confirmed != 1 else ''}"
            )
        if self.complex_disagreed:
            notes.append(
                f"the complex step disagreed with central differences at {self.complex_disagreed} "
                "check(s); those were judged by central differences"
            )
        if any(s == UNCHECKED for _, _, s in coord_entries):
            notes.append("some entries could not be checked because f was not finite within the step")
        passed = not failures
        return GradientReport(
            passed=passed,
            failures=tuple(failures),
            nondifferentiable=tuple(kinks),
            evaluations=self.ev.count,
            max_rel_error=max_rel,
            method=self.method,
            method_reason=self.method_reason,
            mode=mode,
            mode_reason=mode_reason,
            step=self._step_text(mode),
            f_value=self.f0,
            noise=self.sigma,
            kappa=KAPPA,
            rtol=self.rtol,
            coverage=tuple(cov),
            complete=self.complete,
            directions=tuple(e for _, e, _ in dir_entries),
            worst=tuple(worst),
            numeric=space.split(numeric),
            notes=tuple(notes),
            hints=tuple(self._hints(failures)),
        )

    def _step_text(self, mode: str) -> str:
        central = f"h = {self.t_central:.1e}·max(1, |x_i|) (cube root of the relative noise {self.eps_f:.1e})"
        if self.method == "complex-step":
            text = f"complex step h = {COMPLEX_STEP:.0e}·max(1, |x_i|); disagreements confirmed by central differences, {central}"
        elif self.method == "richardson":
            text = (
                f"central differences at h, 2h, 4h, 8h extrapolated to O(h^8), h = 2^k·{self.t_richardson:.1e}"
                f"·max(1, |x_i|) (seventh root of the relative noise {self.eps_f:.1e}) with k from "
                f"{self.k_min} to {self.k_max} set per array by the measured truncation"
            )
        else:
            text = central + (
                f"; 2h added for a truncation estimate where needed, then a third step where truncation "
                f"and round-off balance if the truncation exceeds {REFINE:g} x the round-off"
            )
        if mode == "directional":
            text += (
                "; a direction moves every entry of its range by the same relative step, with random signs"
            )
        return text

    def _hints(self, failures: list[GradientEntry]) -> list[str]:
        """What the disagreements of each array look like: a constant factor, a sign, an L2 term.

        The factor hint looks at the entries whose true gradient is non-zero (the numerical value
        is beyond its own predicted error): an entry whose true gradient is zero (a dead ReLU, a
        masked position) is right under any factor, so it says nothing about one. A factor is
        reported when the ratios ``analytic/numeric`` of the failing entries agree with each
        other (within 1%), cover at least half of those entries, and differ from 1 by more than
        ten times their spread (the ratios' dispersion, or each ratio's own predicted relative
        error, whichever is larger) and by at least 0.1%: a ratio that close to 1 is no factor.
        """
        hints = []
        by_key: dict[str, list[GradientEntry]] = {}
        for e in failures:
            if e.interval is None and math.isfinite(e.numeric) and e.numeric != 0:
                by_key.setdefault(e.key, []).append(e)
        failing_coords: dict[str, list[tuple[float, float]]] = {}  # (analytic - numeric, x_i)
        nonzero: dict[str, int] = {}  # coordinates checked whose true gradient is non-zero
        for rec in self.records:
            res = rec.result
            key = self.space.key(rec.probe.leaf)
            if res.status == FAIL:
                failing_coords.setdefault(key, []).append(
                    (res.analytic - res.numeric, float(self.space.x[int(rec.probe.idx[0])]))
                )
            if res.status in (PASS, FAIL) and abs(res.numeric) > KAPPA * res.predicted:
                nonzero[key] = nonzero.get(key, 0) + 1
        for key, es in by_key.items():
            grad_key = self.grad_label(key)
            es = [e for e in es if abs(e.numeric) > KAPPA * e.predicted_error] or es
            checked = nonzero.get(key, 0)
            if len(es) < 2 or (checked and len(es) < 0.5 * checked):
                continue
            ratios = np.array([e.analytic / e.numeric for e in es])
            r = float(np.median(ratios))
            own = max(
                (e.predicted_error / abs(e.numeric) for e in es if math.isfinite(e.predicted_error)),
                default=0.0,
            )
            spread = max(float(np.max(np.abs(ratios - r))), own * max(1.0, abs(r)))
            if r != 0 and np.all(np.abs(ratios / r - 1) < 1e-2):
                if abs(r - 1) <= max(10.0 * spread, 1e-3):
                    continue  # a ratio of 1 is no factor: the discrepancies are small and unsystematic
                if abs(r + 1) < 1e-2:
                    hints.append(f"{grad_key} has the opposite sign of the numerical gradient: a sign error")
                else:
                    hints.append(
                        f"{grad_key} is {r:.4g} x the numerical gradient wherever it disagrees "
                        f"({len(es)} checks): a constant factor is missing or extra (1/m of a mean over "
                        "m examples, a 2 from a square, a regularisation coefficient)"
                    )
                continue
            pairs = failing_coords.get(key, [])
            if len(pairs) >= 2:
                # analytic - numeric proportional to the parameter itself: an L2 / weight-decay term
                diff = np.array([d for d, _ in pairs])
                xs = np.array([v for _, v in pairs])
                if np.all(xs != 0):
                    k = diff / xs
                    c = float(np.median(k))
                    if c != 0 and np.all(np.abs(k / c - 1) < 1e-2):
                        what = "extra" if c > 0 else "missing"
                        hints.append(
                            f"{grad_key} - numerical = {c:.4g} x {key} at every failing entry: an L2 / "
                            f"weight-decay term looks {what} (for cost + lambd/(2m)·sum(W²) the gradient "
                            "gains (lambd/m)·W)"
                        )
        return hints
