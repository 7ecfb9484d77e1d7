"""Tests of optcheck.testing: audit() and assert_matches_rule() from a user's own test suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optcheck.audit import AuditReport, AuditUsageError
from optcheck.testing import assert_matches_rule, audit

TARGETS = Path(__file__).resolve().parent / "targets"
FAST = {"examples": 10, "steps": 3}


def rmsprop_step(param, grad, state, lr=0.01, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
    sq = np.zeros_like(param) if state is None else state["square_avg"]
    sq = alpha * sq + (1 - alpha) * grad * grad
    return param - lr * grad / (np.sqrt(sq) + eps), {"square_avg": sq}


def rmsprop_step_buggy(param, grad, state, lr=0.01, alpha=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
    sq = np.zeros_like(param) if state is None else state["square_avg"]
    sq = alpha * sq + (1 - alpha) * grad * grad
    return param - lr * (grad / np.sqrt(sq) + eps), {"square_avg": sq}  # epsilon after the division


def test_assert_matches_rule_passes_and_returns_the_report() -> None:
    report = assert_matches_rule(rmsprop_step, "rmsprop", learning_rate=0.01, **FAST)
    assert isinstance(report, AuditReport)
    assert report.verdict == "pass"
    assert report.isolated  # a module-level function is re-imported in a child process
    assert report.hyper["lr"] == 0.01


def test_assert_matches_rule_fails_with_the_text_report() -> None:
    with pytest.raises(AssertionError) as info:
        assert_matches_rule(rmsprop_step_buggy, "rmsprop", **FAST)
    message = str(info.value)
    assert "FAIL:" in message
    assert "eps-outside-denominator" in message
    assert "fix:" in message


def test_audit_accepts_a_file_target_and_args() -> None:
    report = audit(
        f"{TARGETS / 'dict_correct-extra-arg.py'}:update_parameters", "sgd", args={"clip": 1e300}, **FAST
    )
    assert report.verdict == "pass", report.render_text()
    assert report.style == "dict"


def test_hyper_mapping_for_clashing_names() -> None:
    report = audit(rmsprop_step, "rmsprop", hyper={"alpha": 0.9}, **FAST)
    assert report.hyper["alpha"] == 0.9


def test_usage_errors_propagate() -> None:
    with pytest.raises(AuditUsageError, match="no hyperparameter 'beta3'"):
        audit(rmsprop_step, "rmsprop", beta3=0.5)
    with pytest.raises(AuditUsageError, match="unknown rule"):
        audit(rmsprop_step, "rmsprp")


def test_without_a_rule_the_rule_is_identified() -> None:
    report = audit(rmsprop_step, **FAST)
    assert report.rule == "rmsprop" and report.verdict == "pass", report.render_text()
    buggy = audit(rmsprop_step_buggy, **FAST)
    assert buggy.rule == "rmsprop" and "eps-outside-denominator" in buggy.ids(), buggy.render_text()


pytest_plugins = ["pytester"]

USER_TEST = """
import numpy as np
import pytest
from optcheck.testing import assert_matches_rule


def rmsprop_step(param, grad, state, lr=0.01, alpha=0.99, eps=1e-8):
    sq = np.zeros_like(param) if state is None else state["square_avg"]
    sq = alpha * sq + (1 - alpha) * grad * grad
    return param - lr * grad / (np.sqrt(sq) + eps), {"square_avg": sq}


@pytest.mark.optcheck(rule="rmsprop", examples=7, steps=2, seed=3)
def test_mine():
    report = assert_matches_rule(rmsprop_step, isolate=False)
    assert report.rule == "rmsprop"
    assert report.seed == 3
    print("CASES", report.cases, "STEPS", report.steps)
"""


def test_assert_matches_rule_reads_the_optcheck_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-q", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CASES * STEPS 2*"])
