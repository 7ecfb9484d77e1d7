"""The audit's records (:class:`Finding`, :class:`AuditReport`) and their text and JSON renderings."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["AuditReport", "Finding", "example_to_json"]

SEVERITIES = ("error", "warning", "info")


def _jsonable(x: Any) -> Any:
    """Arrays to nested lists, non-finite floats to strings, tuples to lists."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x


def example_to_json(example: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An example (inputs with arrays) as JSON-ready nested lists."""
    if example is None:
        return None
    out: dict[str, Any] = _jsonable(example)
    return out


@dataclasses.dataclass
class Finding:
    """One thing the audit found.

    * ``id``: a catalog id from :mod:`optcheck.diagnose` (``eps-outside-denominator``), an invariant
      id from :mod:`optcheck.invariants` (``non-finite``, ``input-mutated``), a convention id
      (severity ``info``), or the audit's own (``raised-exception``, ``timeout``, ``crashed``,
      ``exited``, ``bad-return``, ``nondeterministic``, ``state-not-updated``,
      ``differs-from-reference``, ``shape-changed``, ``dtype-changed``);
    * ``severity``: ``"error"`` (the target is wrong), ``"warning"`` or ``"info"``;
    * ``message``: what happened, in one or two sentences;
    * ``where``: the array in the user's words (``S['dW1']``), with the index when known;
    * ``step``: the call of the target (1, 2, ...) at which it happened;
    * ``example``: the inputs that show it, shrunk (``params``, then ``grads`` per step);
    * ``expected``/``got``: the reference's value and the target's, or the equations;
    * ``fix``: the corrected equation, when a diagnosis knows it (``wrong``: the buggy one);
    * ``detail``: a traceback or other supporting text (text report only);
    * ``related``: ids of the diagnoses that explain this (reference-free) finding;
    * ``shrunk``: whether ``example`` was shrunk by Hypothesis (the probes' and the hostile
      findings' examples are the inputs as generated);
    * ``summary``/``evidence``: for a diagnosis, the one-sentence summary of the bug and what
      shows it (the text report prints these instead of the full ``message``).
    """

    id: str
    severity: str
    message: str
    where: str | None = None
    step: int | None = None
    example: dict[str, Any] | None = None
    expected: str | None = None
    got: str | None = None
    fix: str | None = None
    detail: str | None = None
    related: list[str] = dataclasses.field(default_factory=list)
    summary: str | None = None
    evidence: str | None = None
    wrong: str | None = None
    shrunk: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``id, severity, message, where, step, example`` plus ``expected``, ``got``, ``wrong``, ``fix``, ``related``."""
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "where": self.where,
            "step": self.step,
            "example": example_to_json(self.example),
            "expected": self.expected,
            "got": self.got,
            "wrong": self.wrong,
            "fix": self.fix,
            "related": list(self.related),
        }


@dataclasses.dataclass
class AuditReport:
    """The result of one audit.

    ``verdict`` is ``"pass"`` (no error finding), ``"fail"`` or ``"error"`` (the audit could not
    run). ``conventions`` lists the ids of the conventions and assumptions under which the
    target matches the rule (``eps-inside-sqrt``, ``course-l2``). ``str(report)`` is the text
    report; :meth:`to_json` the JSON object of ``python -m optcheck audit --format json``.
    ``trajectory`` is a recorded case where the target parts from the reference (``None`` when
    it never does), for :func:`optcheck.diagnose.plot_divergence` (``--plot``).
    ``torch_options``: for a torch optimizer, the situations it was also run in (parameter groups,
    dtypes, foreach/fused/maximize, ...; see :mod:`optcheck.audit.torch_options`), and
    ``torch_options_not_run`` those it refused or that could not be judged, with the reason.
    """

    target: str
    rule: str
    style: str
    verdict: str
    seed: int
    findings: list[Finding]
    conventions: list[str]
    elapsed_s: float
    examples: int = 0
    steps: int = 0
    cases: int = 0
    hyper: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    binding: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    signature: str = ""
    reproduction: str | None = None
    isolated: bool = True
    trajectory: Any = dataclasses.field(default=None, repr=False, compare=False)
    torch_options: list[str] = dataclasses.field(default_factory=list)
    torch_options_not_run: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether there is no finding of severity ``error``."""
        return self.verdict == "pass"

    @property
    def errors(self) -> list[Finding]:
        """The findings of severity ``error``."""
        return [f for f in self.findings if f.severity == "error"]

    def ids(self) -> list[str]:
        """The ids of every finding, in report order."""
        return [f.id for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (see ``docs/cli.md`` for the schema)."""
        return {
            "target": self.target,
            "rule": self.rule,
            "style": self.style,
            "verdict": self.verdict,
            "seed": self.seed,
            "findings": [f.to_dict() for f in self.findings],
            "conventions": list(self.conventions),
            "elapsed_s": round(self.elapsed_s, 3),
            "hyper": _jsonable(self.hyper),
            "assumptions": list(self.notes),
            "torch_options": {"run": list(self.torch_options), "not_run": list(self.torch_options_not_run)},
            "examples": self.examples,
            "steps": self.steps,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string (strict JSON: no NaN literals)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def render_text(self, color: bool = False) -> str:
        """The report for a person: verdict line, binding, findings, reproduction."""
        from .text import render

        return render(self, color=color)

    def __str__(self) -> str:
        return self.render_text()
