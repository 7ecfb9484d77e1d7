"""What the gradient checker returns: entries, per-array coverage, the report and its rendering."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .._core.errors import Error
from .._tree import Tree, flatten, path_str

__all__ = ["Coverage", "GradientEntry", "GradientError", "GradientReport"]


def _num(v: float) -> str:
    if v != v:
        return "nan"
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    a = abs(v)
    if 1e-3 <= a < 1e5:
        return f"{v:.6g}"
    return f"{v:.4e}"


def _err(v: float) -> str:
    if v != v:
        return "-"
    return "0" if v == 0 else f"{v:.1e}"


@dataclasses.dataclass(frozen=True)
class GradientEntry:
    """One comparison between the analytic gradient and a numerical derivative.

    * ``key``: the array, as the user writes it (``x['W1']``); ``index``: the entry in it
      (``()`` for a 0-d array), or ``None`` for a check along a random direction;
    * ``analytic``: the value of ``grad`` (for a direction u: ``grad · u``);
      ``numeric``: the finite-difference (or complex-step) derivative;
    * ``abs_error`` = ``|analytic - numeric|``; ``rel_error`` = ``abs_error`` divided by
      ``max(|analytic|, |numeric|, floor)``, where the floor is what the finite difference can
      resolve (``kappa * predicted_error``) and, for an entry of an array, a thousandth of the
      largest entry of that array, so that entries near zero do not report meaningless ratios;
    * ``predicted_error``: the error model's estimate of the numerical derivative's own error
      (round-off + truncation, plus the round-off of a low-precision analytic gradient);
      ``tolerance``: the largest ``abs_error`` that passes (``kappa * predicted_error + rtol * magnitude``);
    * ``method``, ``step``: how the numerical value was obtained;
    * ``interval``: at a kink, the one-sided derivatives ``(low, high)``: any analytic value
      between them (a subgradient) passes;
    * ``entries``: for a direction, the flat range ``(start, stop)`` of the array's entries it moved;
    * ``note``: anything else worth knowing about this entry.
    """

    key: str
    index: tuple[int, ...] | None
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    predicted_error: float
    tolerance: float
    method: str = "central"
    step: float = math.nan
    interval: tuple[float, float] | None = None
    entries: tuple[int, int] | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the discrepancy is within the tolerance (or the analytic value is a subgradient at a kink)."""
        if self.interval is not None:
            lo, hi = self.interval
            slack = self.tolerance
            return lo - slack <= self.analytic <= hi + slack
        return bool(self.abs_error <= self.tolerance)

    @property
    def where(self) -> str:
        """``x['W1'][2, 1]``, ``x[3]`` or ``x['W1'] along a random direction``."""
        if self.index is None:
            span = ""
            if self.entries is not None:
                span = f" (flat entries {self.entries[0]}..{self.entries[1] - 1})"
            return f"{self.key} along a random direction{span}"
        if self.index == ():
            return self.key
        return f"{self.key}[{', '.join(str(i) for i in self.index)}]"

    @property
    def excess(self) -> float:
        """``abs_error / tolerance``: above 1 fails (for a kink, the distance outside the interval)."""
        if self.interval is not None:
            lo, hi = self.interval
            out = max(lo - self.analytic, self.analytic - hi, 0.0)
            return out / self.tolerance if self.tolerance > 0 else (math.inf if out > 0 else 0.0)
        if self.tolerance > 0:
            return self.abs_error / self.tolerance
        return 0.0 if self.abs_error == 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain Python values (JSON-ready; ``nan`` stays a float)."""
        d = dataclasses.asdict(self)
        d["index"] = None if self.index is None else list(self.index)
        d["interval"] = None if self.interval is None else list(self.interval)
        d["entries"] = None if self.entries is None else list(self.entries)
        d["where"] = self.where
        d["passed"] = self.passed
        return d


@dataclasses.dataclass(frozen=True)
class Coverage:
    """What was checked in one array of ``x``.

    ``coordinates``: entries checked one by one; ``directions``: random directional checks
    over the array (``directions_failed`` of them failed); ``unchecked``: entries where ``f``
    was not finite within the step; ``note``: how the array was covered, or why not fully.
    """

    key: str
    size: int
    coordinates: int = 0
    directions: int = 0
    directions_failed: int = 0
    unchecked: int = 0
    note: str = ""

    def describe(self) -> str:
        """One line for the report."""
        parts = []
        if self.coordinates == self.size:
            parts.append("its only entry" if self.size == 1 else f"all {self.size} entries")
        elif self.coordinates and self.directions:
            parts.append(f"{self.coordinates} entries one by one")
        elif self.coordinates:
            parts.append(f"{self.coordinates} of {self.size} entries")
        if self.directions:
            parts.append(
                f"{self.directions} directional check{'s' if self.directions != 1 else ''}"
                + (f" ({self.directions_failed} failed)" if self.directions_failed else "")
            )
        if not parts:
            parts.append(f"none of its {self.size} entries")
        text = " + ".join(parts)
        if self.unchecked:
            text += f"; {self.unchecked} could not be checked (f not finite within the step)"
        if self.note:
            text += f"; {self.note}"
        return text


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """The result of :func:`~optcheck.gradcheck.check_gradient` (and :func:`~optcheck.gradcheck.check_vjp`).

    * ``passed``: no entry or direction disagreed beyond its tolerance (and ``f`` was deterministic);
    * ``failures``: the disagreeing entries (:class:`GradientEntry`), worst first; a directional
      failure that could not be narrowed down to entries appears with ``index=None``;
    * ``nondifferentiable``: entries where ``f`` has a kink within the step and the analytic
      value lies between the one-sided derivatives (they pass);
    * ``directions``: every directional check made (mode ``"directional"``);
    * ``evaluations``: calls of ``f`` spent, all included;
    * ``max_rel_error``: the largest ``rel_error`` over the entries and directions checked
      (kinks excluded); ``0.0`` when nothing was checked;
    * ``method``/``method_reason``, ``mode``/``mode_reason``, ``step``: what was done and why;
    * ``f_value``, ``noise``: ``f(x)`` and the measured noise of ``f`` (its standard deviation);
    * ``kappa``, ``rtol``: the verdict rule ``|analytic - numeric| > kappa * predicted_error + rtol * magnitude``;
    * ``coverage``: per array, what was and was not checked; ``complete``: every entry was covered
      by some check (one by one, by a sample, or by directions);
    * ``numeric``: the numerical derivatives computed entry by entry, laid out like ``x``
      (``nan`` where an entry was not computed on its own);
    * ``worst``: the worst entries of each array (what ``str(report)`` tabulates);
    * ``message``: why the check stopped early (``f`` not deterministic), else ``""``;
    * ``notes``, ``hints``: remarks on the method and on what the failures look like.
    """

    passed: bool
    failures: tuple[GradientEntry, ...]
    nondifferentiable: tuple[GradientEntry, ...]
    evaluations: int
    max_rel_error: float
    method: str
    method_reason: str
    mode: str
    mode_reason: str
    step: str
    f_value: float
    noise: float
    kappa: float
    rtol: float
    coverage: tuple[Coverage, ...]
    complete: bool
    directions: tuple[GradientEntry, ...] = ()
    worst: tuple[GradientEntry, ...] = ()
    numeric: Tree = None
    message: str = ""
    notes: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.passed

    @property
    def checked(self) -> int:
        """How many entries were checked one by one."""
        return sum(c.coordinates for c in self.coverage)

    def summary(self) -> str:
        """The first line of ``str(report)``: the verdict in one sentence."""
        if self.message:
            return f"Gradient check FAILED: {self.message}"
        n_keys = len(self.coverage)
        total = sum(c.size for c in self.coverage)
        scope = f"{total} entr{'ies' if total != 1 else 'y'}" + (f" in {n_keys} arrays" if n_keys > 1 else "")
        if self.passed:
            kinks = (
                f"; {len(self.nondifferentiable)} at kinks, where the analytic value is a valid subgradient"
                if self.nondifferentiable
                else ""
            )
            partial = "" if self.complete else " (partial coverage: see below)"
            return f"Gradient check passed{partial}: {scope}, max relative error {self.max_rel_error:.1e}{kinks}."
        coords = [e for e in self.failures if e.index is not None]
        dirs = [e for e in self.failures if e.index is None]
        parts = []
        if coords:
            shown = ", ".join(e.where for e in coords[:3]) + (", ..." if len(coords) > 3 else "")
            parts.append(
                f"{len(coords)} entr{'ies disagree' if len(coords) != 1 else 'y disagrees'} ({shown})"
            )
        if dirs:
            keys = sorted({e.key for e in dirs})
            parts.append(
                f"{len(dirs)} directional check{'s disagree' if len(dirs) != 1 else ' disagrees'} in {', '.join(keys)}"
            )
        return f"Gradient check FAILED: {'; '.join(parts)}."

    def __str__(self) -> str:
        lines = [self.summary(), ""]
        if self.message:
            lines += [f"Evaluations : {self.evaluations}"]
            return "\n".join(lines)
        lines += [
            f"Checked     : {self.mode} ({self.mode_reason})",
            *(f"  {c.key}: {c.describe()}" for c in self.coverage),
            f"Method      : {self.method} ({self.method_reason})",
            f"Step        : {self.step}",
            f"Noise of f  : {_noise_line(self.f_value, self.noise)}",
            f"Verdict rule: an entry fails when |analytic - numeric| > {self.kappa:g} x predicted error"
            f" + {self.rtol:.0e} x |value|",
            f"Evaluations : {self.evaluations}",
        ]
        if self.worst:
            lines += [
                "",
                "Worst entries per array (predicted: the error model's estimate of the numerical value's own error):",
            ]
            lines += _table(self.worst)
        rest = [e for e in self.failures if e not in self.worst]
        if rest:
            lines += ["", f"Other failures ({len(rest)}), worst first:"]
            lines += _table(rest[:30])
            if len(rest) > 30:
                lines.append(f"  ... and {len(rest) - 30} more (report.failures has them all)")
        kinks = [e for e in self.nondifferentiable if e not in self.worst]
        if kinks:
            lines += [
                "",
                "Kinks (f is not differentiable within the step; the analytic value is a subgradient):",
            ]
            lines += _table(kinks[:10])
        for title, items in (("Hints", self.hints), ("Notes", self.notes)):
            if items:
                lines += ["", f"{title}:"] + [f"  - {t}" for t in items]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain Python values (the numerical gradient as nested lists), JSON-ready."""
        numeric: Any = None
        if self.numeric is not None:
            leaves = flatten(self.numeric)
            numeric = {path_str("x", p): v.tolist() for p, v in leaves}
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "message": self.message,
            "failures": [e.to_dict() for e in self.failures],
            "nondifferentiable": [e.to_dict() for e in self.nondifferentiable],
            "directions": [e.to_dict() for e in self.directions],
            "evaluations": self.evaluations,
            "max_rel_error": self.max_rel_error,
            "method": self.method,
            "method_reason": self.method_reason,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "step": self.step,
            "f_value": self.f_value,
            "noise": self.noise,
            "kappa": self.kappa,
            "rtol": self.rtol,
            "complete": self.complete,
            "coverage": [dataclasses.asdict(c) for c in self.coverage],
            "notes": list(self.notes),
            "hints": list(self.hints),
            "numeric": numeric,
        }


def _noise_line(f_value: float, noise: float) -> str:
    rel = noise / abs(f_value) if f_value else math.nan
    if rel != rel:
        return f"{noise:.1e} (f(x) = 0)"
    if rel < 1e-13:
        what = "float64 round-off"
    elif rel < 1e-9:
        what = "more than float64 round-off"
    elif rel < 1e-5:
        what = "about float32 round-off: f computes in lower precision; steps and tolerances follow"
    else:
        what = "very noisy; steps and tolerances follow"
    return f"{noise:.1e} = {rel:.1e} x |f(x)|, f(x) = {_num(f_value)} ({what})"


def _table(entries: tuple[GradientEntry, ...] | list[GradientEntry]) -> list[str]:
    header = ("where", "analytic", "numeric", "abs err", "rel err", "predicted", "verdict")
    rows = []
    for e in entries:
        if e.interval is not None:
            numeric = f"[{_num(e.interval[0])}, {_num(e.interval[1])}]"
            verdict = "kink, ok" if e.passed else "FAIL (kink)"
        else:
            numeric = _num(e.numeric)
            verdict = "ok" if e.passed else "FAIL"
        rows.append(
            (
                e.where,
                _num(e.analytic),
                numeric,
                _err(e.abs_error),
                _err(e.rel_error),
                _err(e.predicted_error),
                verdict,
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  " + "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header)]
    out += [fmt.format(*r) for r in rows]
    notes = [(e.where, e.note) for e in entries if e.note]
    out += [f"  * {w}: {n}" for w, n in notes]
    return out


class GradientError(Error, AssertionError):
    """Raised by :func:`~optcheck.gradcheck.assert_gradient` when the check fails; ``.report`` holds the report."""

    def __init__(self, report: GradientReport) -> None:
        super().__init__(str(report))
        self.report = report
