"""The invariants' registry drives these tests and the documentation's table.

For every invariant of :data:`optcheck.invariants.REGISTRY` that :func:`check_update` checks,
a step written fresh breaks it, and the report names it; a clean step breaks none. The
documentation's table is written from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optcheck
from optcheck import invariants as inv

ROOT = Path(__file__).resolve().parent.parent


def _adam_step() -> tuple[Any, ...]:
    rule = optcheck.rules.get("adam", lr=0.01)
    p = {"W": np.array([[1.0, -2.0], [0.5, 0.0]]), "b": np.array([0.1, -0.1])}
    g = {"W": np.array([[0.3, -0.1], [0.2, 0.4]]), "b": np.array([0.5, -0.5])}
    s = rule.init(p)
    s1 = {k: dict(v) if isinstance(v, dict) else v for k, v in rule.step(p, g, s)[1].items()}
    p1 = dict(rule.step(p, g, s)[0])
    return rule, p, g, s, p1, s1


def _shape_changed() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    p1["b"] = p1["b"][:, None] + p1["b"]  # (2,) + (2, 1) broadcast to (2, 2)
    return inv.check_update(rule, p, g, s, p1, s1)


def _dtype_changed() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    p1["W"] = p1["W"].astype(np.float32)
    return inv.check_update(rule, p, g, s, p1, s1)


def _input_mutated() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    copy = {k: v.copy() for k, v in g.items()}
    g["W"] += 1.0  # the update wrote into its gradient
    return inv.check_update(rule, p, g, s, p1, s1, before={"grads": copy})


def _step_not_incremented() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    s1["step"] = s["step"]
    return inv.check_update(rule, p, g, s, p1, s1)


def _negative_second_moment() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    s1["exp_avg_sq"]["W"] = s1["exp_avg_sq"]["W"] - 1.0
    return inv.check_update(rule, p, g, s, p1, s1, skip=("non-finite", "update-too-large"))


def _sqrt_of_negative() -> list[inv.Violation]:
    rule = optcheck.rules.get("rmsprop", centered=True)
    p, g = {"w": np.array([1.0, 2.0])}, {"w": np.array([0.5, -0.5])}
    s = rule.init(p)
    p1, s1 = rule.step(p, g, s)
    v = s1["square_avg"]["w"]
    s1 = dict(s1, grad_avg={"w": np.sqrt(v) * (1 + 4e-16)})  # v − ḡ² below zero by rounding only
    return inv.check_update(rule, p, g, s, p1, s1, skip=("update-too-large",))


def _accumulator_decreased() -> list[inv.Violation]:
    rule = optcheck.rules.get("adagrad")
    p, g = {"w": np.array([1.0, 2.0])}, {"w": np.array([0.5, -0.5])}
    s = dict(rule.init(p), sum={"w": np.array([4.0, 4.0])})
    p1, s1 = rule.step(p, g, s)
    s1 = dict(s1, sum={"w": np.array([1.0, 5.0])})
    return inv.check_update(rule, p, g, s, p1, s1, skip=("update-too-large",))


def _non_finite() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    p1["W"] = p1["W"].copy()
    p1["W"][0, 0] = np.nan
    return inv.check_update(rule, p, g, s, p1, s1)


def _update_without_gradient() -> list[inv.Violation]:
    rule = optcheck.rules.get("sgd", lr=0.1)
    p, g = {"w": np.array([1.0, 2.0])}, {"w": np.array([0.5, 0.0])}
    s = rule.init(p)
    p1, s1 = rule.step(p, g, s)
    p1 = {"w": p1["w"] - 1e-9}  # g/√S + ε: every entry drifts, also where the gradient is zero
    return inv.check_update(rule, p, g, s, p1, s1)


def _update_too_large() -> list[inv.Violation]:
    rule, p, g, s, p1, s1 = _adam_step()
    p1["W"] = p["W"] - 0.5  # fifty times lr
    return inv.check_update(rule, p, g, s, p1, s1)


BREAKS: dict[str, Callable[[], list[inv.Violation]]] = {
    "shape-changed": _shape_changed,
    "dtype-changed": _dtype_changed,
    "input-mutated": _input_mutated,
    "step-not-incremented": _step_not_incremented,
    "negative-second-moment": _negative_second_moment,
    "sqrt-of-negative": _sqrt_of_negative,
    "accumulator-decreased": _accumulator_decreased,
    "non-finite": _non_finite,
    "update-without-gradient": _update_without_gradient,
    "update-too-large": _update_too_large,
}
"""A step that breaks each invariant :func:`check_update` checks (``differs-from-reference``: the guard's shadow)."""


def test_the_registry_is_the_list_of_invariants() -> None:
    assert tuple(i.id for i in inv.REGISTRY) == inv.INVARIANTS
    assert sorted(i.doc_order for i in inv.REGISTRY) == list(range(len(inv.REGISTRY)))
    for i in inv.REGISTRY:
        assert i.checks and i.hint, i.id
        if i.id != "differs-from-reference":
            assert callable(i.applies) and callable(i.describe), i.id
            assert i.applies.__doc__ and i.describe.__name__ != "<lambda>", i.id


@pytest.mark.parametrize("invariant", [i for i in inv.REGISTRY if i.describe is not None], ids=lambda i: i.id)
def test_each_invariant_is_found_when_broken(invariant: inv.Invariant) -> None:
    assert invariant.id in BREAKS, f"add a step that breaks {invariant.id} to BREAKS"
    found = BREAKS[invariant.id]()
    assert invariant.id in [v.id for v in found], [v.message for v in found]


def test_a_clean_step_breaks_none() -> None:
    rule, p, g, s, p1, s1 = _adam_step()
    assert inv.check_update(rule, p, g, s, p1, s1) == []


def test_the_screens_agree_with_the_checks_on_every_broken_step() -> None:
    """On each breaking step the fast screen must not claim "all holds" (it would hide the finding)."""
    from unittest import mock

    for invariant_id, make in BREAKS.items():
        with mock.patch.object(inv, "screen", lambda *a: False):
            precise = [v.id for v in make()]
        fast = [v.id for v in make()]
        assert fast == precise, invariant_id


def test_the_documentation_table_is_written_from_the_registry() -> None:
    page = (ROOT / "docs" / "invariants.md").read_text(encoding="utf-8")
    assert inv.registry_markdown() in page, (
        "docs/invariants.md is stale: paste optcheck.invariants.registry_markdown() under 'The list'"
    )
