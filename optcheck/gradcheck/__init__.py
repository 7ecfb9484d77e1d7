"""A finite-difference gradient checker that picks its own step, explains its verdict,
localises the bad entry and knows about kinks.

:func:`check_gradient` compares an analytic gradient with numerical derivatives of ``f``;
:func:`assert_gradient` raises :class:`GradientError` when they disagree; :func:`check_vjp`
checks a layer's backward (a vector-Jacobian product); :func:`check_layer` does it in one call
for a forward/backward pair in the (out, cache) or the plain convention; :func:`check_torch`
checks torch autograd (custom ``autograd.Function`` backward passes included) the same way;
:func:`step_sweep` shows the error of
the numerical derivative against the step (the V-shaped curve).

How it works
------------
**Determinism first.** ``f`` is evaluated twice at ``x`` before anything else. If the two
values differ by more than the square root of the result dtype's epsilon (relative), the check
stops and fails with a message saying that ``f`` is not deterministic (dropout with a fresh
mask, sampling): every finite difference of such an ``f`` is noise. Smaller differences
(non-deterministic reductions) are treated as noise of ``f``.

**Noise.** The noise ``sigma`` of ``f`` is measured with Moré and Wild's ECnoise: ``f`` at
seven equally spaced points along a random line through ``x`` (six new evaluations), and the
level at which high-order differences stop shrinking. It is floored at half an ulp of
``f(x)`` in its result dtype. A float64 ``f`` has ``sigma ≈ 1e-16·|f|``; an ``f`` that
computes internally in float32 has ``sigma ≈ 1e-8·|f|`` or more, and everything below
(steps, tolerances) follows from the measured value rather than from the dtype of ``x``.
Numerical derivatives are formed in float64 from the values of ``f``. Numpy arrays are handed
to ``f`` as fresh copies: float64 ones, except that float32/float16 arrays keep their dtype by
default (``keep_dtype``), so that ``f`` runs in the precision its gradient was computed in; the
perturbed values are rounded to that dtype and the step is measured after rounding. A warning
says when float32 inputs give a float64 result. Torch tensors are accepted too (without optcheck
importing torch): ``f`` receives tensors in their own dtype and device.

**Steps.** With ``eps = sigma/|f(x)|`` (between float64's epsilon and ``1e-3``): central
differences use ``h_i = eps^(1/3)·max(1, |x_i|)``, the step that balances round-off against
truncation when ``f`` varies on the scale ``max(1, |x_i|)``. Where it does not (logsumexp at
inputs in the hundreds varies on the scale 1), the truncation measured from ``h`` and ``2h``
shows it: when it exceeds 8 times the round-off, a third step ``h* = h·(round-off/(2·truncation))^(1/3)``
is taken, where the two balance, and its difference is used if ``d(h) - d(h*)`` confirms the
``h²`` behaviour (two more evaluations, only on such entries). Richardson extrapolation builds a
table on central differences at ``h``, ``2h``, ``4h``, ``8h`` with ``h = 2^k·eps^(1/7)·max(1, |x_i|)``:
its columns ``R1 = (4D(h) - D(2h))/3``, ``R2 = (16R1(h) - R1(2h))/15`` and
``R3 = (64R2(h) - R2(2h))/63`` cancel the ``h²``, ``h^4`` and ``h^6`` terms (error ``O(h^8)``).
Successive differences of the ``D`` must shrink 4-fold and those of the ``R1`` 16-fold as the
step halves (the Taylor series holds); there the value is ``R3``, or the entry of the table with
a smaller estimated error where ``f`` is nearly flat or polynomial along the probe. The window
moves down the grid where the ``D`` do not converge, where ``f`` is not finite at ``8h``, or by
the factor that balances truncation and round-off where truncation dominates; each array
remembers where its last entry settled (one step lower while truncation dominates, one higher
while it is a hundredth of the round-off), so its first entries find the scale of ``f`` and the
others start there, at 8 evaluations each. The complex step uses ``h = 1e-20·max(1, |x_i|)`` and
``Im f(x + ih·e_i)/h``, which has no cancellation and is exact to round-off when ``f`` is
complex-analytic. The step actually taken is recomputed after rounding (``(x + h) - x``), so it
is exact. ``method="auto"`` evaluates ``f`` once at a complex point along a random direction
and uses the complex step when the result matches central differences there; otherwise
Richardson when ``f`` is noisy (relative noise above ``1e-10``: its larger step divides the
noise by less), else central differences. The report says which method was chosen and why.

**Error model and verdict.** For each check (an entry, or a random direction ``u``) the error of
the numerical value ``d`` is predicted as

* round-off: ``sigma/h`` for central differences (``1.46·sigma/h`` for Richardson's ``R3``, the
  root sum of squares of its weights); for the complex step ``4·eps·(|d| + scale of the array)``;
* truncation, for a check that the round-off alone does not explain: a second step ``2h`` is
  taken and the truncation error of ``d`` estimated as ``|d(h) - d(2h)|/3`` (at the refined
  step ``h*``: that estimate times ``(h*/h)²``). Richardson estimates it for every entry: for
  ``R3``, conservatively, the error of ``R2(h)``, ``|R2(h) - R2(2h)|/63``; for the other entries
  of the table the difference with the same column at the next step, divided by ``4^j - 1``
  (times ``4^j`` from the smaller step); where the table does not converge as it should, the
  undivided ``|R(h) - R(2h)|``;
* the round-off of the analytic value itself: ``10·eps·(|g_i| + rms of its array +
  |f(x)|/(n·max(1, |x_i|)))``, which matters for a gradient computed in low precision, or
  for entries that come out of a cancellation (``1 - tanh(z)**2`` at a saturated unit). ``eps``
  is that of the precision the gradient was computed in, not of the dtype it was returned in:
  the least precise of its own dtype, the dtype its entry of ``x`` is handed to ``f`` in, the
  dtype of ``f``'s result, and the precision the measured noise of ``f`` shows (float32's above
  a relative noise of ``1e-10``, float16's above ``1e-5``).

An entry fails when ``|analytic - numeric| > kappa·predicted + rtol·max(|analytic|, |numeric|)``
with ``kappa = 10`` ("well beyond" the estimate) and the relative floor ``rtol = 1e-8`` (a
guard against an under-estimated model; the ``rtol`` argument replaces it). Relative errors
are reported against ``max(|analytic|, |numeric|)``, floored at what the finite difference can
resolve and, for an entry, at a thousandth of the largest entry of its array, so that entries
near zero do not report meaningless ratios. With the complex step, every disagreement is
confirmed by real central differences: if those contradict the complex-step value (``f`` is
not complex-analytic in that entry), the entry is judged by central differences instead.

**Kinks.** When the second step is taken (central differences: for a failing entry, or when
the one-sided differences at ``h`` already disagree; Richardson: always, at no extra cost),
second-order one-sided derivatives are formed from
``f(x)``, ``f(x ± h)``, ``f(x ± 2h)``: ``(-3f(x) + 4f(x+h) - f(x+2h))/2h`` and its mirror. For a
smooth ``f`` they agree to ``O(h³)`` (their difference is the fourth difference of the five
values, so this is also the test that a low-order fit through the points holds); when they
differ by more than ``10 x`` their predicted error, ``f`` has a kink within the step (with
Richardson's larger steps, the same difference at twice the step must also not grow 8-fold, as
curvature would: a kink's jump keeps its size whatever the step). The
analytic value then passes if it lies between the one-sided derivatives (a valid subgradient:
ReLU at 0 with subgradient 0), and the entry is listed in ``report.nondifferentiable``; a value
outside the interval fails (``|x|`` at 0 with analytic 2).
The complex step takes the right-hand derivative at a kink sitting exactly at ``x`` (``max`` and
comparisons break the tie by the sign of the imaginary part), so it would pass a right-hand
value without a word: when the method is chosen, ``f(x - ih·u)`` is compared with the conjugate
of ``f(x + ih·u)`` (one evaluation); where they differ, ``f`` has kinks at ``x`` and every
entry is also evaluated at ``-ih``, its left-hand derivative; entries where the two differ are
kinks, judged by the interval as above.

**Modes and localisation.** ``mode="full"`` checks every entry, ``"sample"`` a random sample of
each array, ``"directional"`` compares ``grad·u`` with the derivative along random unit directions
``u`` over each array (random signs, entries scaled by ``max(1, |x_i|)``; two evaluations per
direction, one with the complex step). When a direction fails, the array's entries are split in
two halves, each tested along a fresh random direction, and the failing halves split again
(group testing), down to ranges of four entries that are checked one by one: a single bad entry
among ``n`` costs about ``4·log2(n)`` evaluations and the report still names its key and index.
Localisation stops after five bad entries per array (a factor missing everywhere makes every
half fail; the hints then say what the disagreement looks like). ``"auto"`` is full up to 2,000
entries, directional beyond. ``max_evaluations`` caps the cost; the report's coverage lines say
what was and was not checked.
"""

from __future__ import annotations

from ._api import assert_gradient, check_gradient, check_vjp
from ._layer import check_layer
from ._report import Coverage, GradientEntry, GradientError, GradientReport
from ._sweep import StepSweep, step_sweep
from ._torch import check_torch

__all__ = [
    "Coverage",
    "GradientEntry",
    "GradientError",
    "GradientReport",
    "StepSweep",
    "assert_gradient",
    "check_gradient",
    "check_layer",
    "check_torch",
    "check_vjp",
    "step_sweep",
]
