"""Tests of optcheck._trajectory: replay and parameter-group overrides."""

from __future__ import annotations

import numpy as np
import pytest

import optcheck
from optcheck._trajectory import replay, step_tree


def _case(seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    p = {"W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=(3, 1))}
    gs = [{k: rng.normal(size=v.shape) for k, v in p.items()} for _ in range(4)]
    return p, gs


def test_override_with_the_same_rule_equals_plain_step() -> None:
    rule = optcheck.rules.get("adam", weight_decay=0.1)
    p, gs = _case()
    plain = replay(rule, p, gs)
    grouped = replay(rule, p, gs, overrides={("b1",): rule})
    for (pa, sa), (pb, sb) in zip(plain, grouped, strict=True):
        for k in p:
            np.testing.assert_array_equal(pa[k], pb[k])
            np.testing.assert_array_equal(sa["exp_avg_sq"][k], sb["exp_avg_sq"][k])
        assert sa["step"] == sb["step"]


def test_override_changes_only_its_leaf() -> None:
    rule = optcheck.rules.get("adam", weight_decay=0.1)
    p, gs = _case(1)
    plain = replay(rule, p, gs)
    no_decay_bias = replay(rule, p, gs, overrides={("b1",): rule.replace(weight_decay=0.0)})
    np.testing.assert_array_equal(plain[-1][0]["W1"], no_decay_bias[-1][0]["W1"])
    alone = replay(rule.replace(weight_decay=0.0), p["b1"], [g["b1"] for g in gs])
    np.testing.assert_array_equal(no_decay_bias[-1][0]["b1"], alone[-1][0])


def test_override_must_be_the_same_rule() -> None:
    rule = optcheck.rules.get("adam")
    p, gs = _case()
    with pytest.raises(ValueError, match="must be the same rule"):
        step_tree(rule, p, gs[0], rule.init(p), {("b1",): rule.replace(amsgrad=True)})
