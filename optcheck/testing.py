"""Audit your own optimizer from your own test suite.

::

    from optcheck.testing import assert_matches_rule

    def test_my_adam():
        assert_matches_rule(update_parameters_with_adam, "adam", lr=0.01)

The engine is the one behind ``python -m optcheck audit``: generated multi-step inputs,
invariant checks on every call, a step-by-step comparison with the reference rule, and the
bug named by diagnosis. A target that can be imported by name (a function or class at the
top level of a module or file) runs in an isolated child process; one defined inside a
function runs in this process (no protection against hangs or crashes).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ._core import validate as _v
from .audit import AuditReport, AuditUsageError

__all__ = ["AuditReport", "AuditUsageError", "assert_matches_rule", "audit"]


def audit(
    target: Any,
    rule: str | None = None,
    *,
    args: Mapping[str, Any] | None = None,
    style: str = "auto",
    seed: int | None = None,
    examples: int | None = None,
    steps: int | None = None,
    timeout: float | None = None,
    isolate: bool | None = None,
    hyper: Mapping[str, Any] | None = None,
    bind: Mapping[str, str] | None = None,
    **hyperparameters: Any,
) -> AuditReport:
    """Audit ``target`` against the reference ``rule``; returns the :class:`~optcheck.audit.AuditReport`.

    ``target`` is a function or class, or ``"path/to/file.py:NAME"`` / ``"package.module:NAME"``.
    ``**hyperparameters`` set the reference's hyperparameters (rule names or the usual aliases:
    ``learning_rate``, ``beta``, ``epsilon``, ...); ``hyper={...}`` does the same for names that
    clash with the keywords here. ``args`` gives values for the target's own extra arguments
    (``{"batch_size": 32}``), ``bind`` the roles of arguments whose names do not say them
    (``{"a": "params"}``, like ``--bind``); without a rule (and no marker) the rule is identified
    (``"auto"``). ``isolate=False`` forces running in this process, ``True`` requires a
    child process. Raises :class:`~optcheck.audit.AuditUsageError` when the audit cannot run.

    Inside a pytest test marked ``@pytest.mark.optcheck(rule=..., examples=..., steps=..., seed=...)``
    (optcheck's pytest plugin), the marker supplies ``rule``, ``examples``, ``steps`` and ``seed``
    where they are not given here; ``--optcheck-examples`` on the command line overrides ``examples``.
    Outside such a test the defaults are the CLI's (seed 0).
    """
    from .audit.engine import run_audit

    # the audit's own settings are checked by run_audit; these are the ones only this function takes
    args = _v.check_mapping("args", args, what="a dict of the target's extra arguments ({'batch_size': 32})")
    hyper = _v.check_mapping("hyper", hyper, what="a dict of hyperparameters ({'lr': 0.01})")
    timeout = _v.check_float("timeout", timeout, low=0.0, low_open=True, optional=True)
    if isolate is not None:
        isolate = _v.check_bool("isolate", isolate)
    marked = _marker_settings()
    if marked is not None:
        if rule is None and isinstance(marked.rule, str):
            rule = marked.rule
        examples = marked.examples if examples is None else examples
        steps = marked.steps if steps is None else steps
        seed = marked.seed if seed is None else seed
    if rule is None:
        rule = "auto"  # identify it, as ``python -m optcheck audit`` does by default
    both = {**dict(hyper or {}), **hyperparameters}
    return run_audit(
        target,
        rule,
        hyper=both,
        args=args,
        style=style,
        seed=0 if seed is None else seed,
        examples=examples,
        steps=steps,
        timeout=timeout,
        isolate=isolate,
        bind=bind,
    )


def _marker_settings() -> Any:
    """The optcheck marker's settings of the pytest test running now (None outside one)."""
    plugin = sys.modules.get("optcheck.pytest_plugin")
    if plugin is None:
        return None
    return plugin.current_settings()


def assert_matches_rule(target: Any, rule: str | None = None, **kwargs: Any) -> AuditReport:
    """Audit ``target`` (see :func:`audit`, same arguments) and raise ``AssertionError`` unless it passes.

    The error's message is the text report: the findings, the shrunk inputs and a runnable
    reproduction. Conventions that are not bugs (epsilon inside the square root, the course's
    EMA momentum, ...) pass. Returns the report when the target passes.
    """
    report = audit(target, rule, **kwargs)
    if report.verdict != "pass":
        raise AssertionError("\n" + report.render_text())
    return report
