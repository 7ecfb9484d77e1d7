"""Tests of optcheck.audit.adapters: detecting the calling style and binding arguments by name."""

from __future__ import annotations

from typing import Any

import pytest

from optcheck.audit import AuditUsageError, adapters
from optcheck.audit._common import ParamInfo, TargetInfo

# ---------------------------------------------------------------------------------------------
# Binding by name
# ---------------------------------------------------------------------------------------------


def _info(*names: str, defaults: dict[str, Any] | None = None) -> TargetInfo:
    defaults = defaults or {}
    params = tuple(
        ParamInfo(n, "POSITIONAL_OR_KEYWORD", n in defaults, defaults.get(n), repr(defaults.get(n)))
        for n in names
    )
    return TargetInfo("x.py:f", "f", "function", params)


@pytest.mark.parametrize(
    ("names", "style"),
    [
        (("parameters", "grads", "v", "s", "t"), "dict"),
        (("w", "dw", "config"), "config"),
        (("param", "grad", "state"), "functional"),
        (("p", "g"), "dict"),  # the generic function style: one array is found by the first call
    ],
)
def test_detect_style(names: tuple[str, ...], style: str) -> None:
    assert adapters.detect_style(_info(*names)) == style


def test_bind_course_adam() -> None:
    import optcheck.rules as R

    info = _info(
        "parameters",
        "grads",
        "v",
        "s",
        "t",
        "learning_rate",
        "beta1",
        "beta2",
        "epsilon",
        defaults={"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    )
    b = adapters.bind(info, "dict", R.rule_class("adam"), {"beta2": ("beta2", 0.99)}, {})
    roles = {c.name: c.role for c in b.plan.calls}
    assert roles == {
        "parameters": "params",
        "grads": "grads",
        "v": "state",
        "s": "state",
        "t": "step",
        "learning_rate": "hyper",
        "beta1": "hyper",
        "beta2": "hyper",
        "epsilon": "hyper",
    }
    assert b.ref_hyper == {"beta2": 0.99, "lr": 0.01, "beta1": 0.9, "eps": 1e-8}
    assert adapters.map_states(["v", "s"], R.get("adam")) == {"v": "exp_avg", "s": "exp_avg_sq"}
    assert adapters.map_states(["m", "v"], R.get("adam")) == {"m": "exp_avg", "v": "exp_avg_sq"}
    assert adapters.map_states(["cache"], R.get("rmsprop")) == {"cache": "square_avg"}


def test_bind_unknown_argument_names_it() -> None:
    import optcheck.rules as R

    with pytest.raises(AuditUsageError, match=r"'foo'.*--arg foo=VALUE"):
        adapters.bind(_info("parameters", "grads", "foo"), "dict", R.rule_class("sgd"), {}, {})


def test_bind_course_l2_needs_weight_decay() -> None:
    import optcheck.rules as R

    info = _info("parameters", "grads", "lambd", "m", defaults={"lambd": 0.5, "m": 10})
    b = adapters.bind(info, "dict", R.rule_class("sgd"), {}, {})
    assert b.l2 is not None and b.ref_hyper["weight_decay"] == pytest.approx(0.05)
    with pytest.raises(AuditUsageError, match=r"lambd=0\.5: rprop has no weight decay"):
        adapters.bind(info, "dict", R.rule_class("rprop"), {}, {})


@pytest.mark.parametrize(
    ("alias", "rule", "name"),
    [
        ("learning_rate", "adam", "lr"),
        ("beta", "rmsprop", "alpha"),
        ("beta", "sgd", "momentum"),
        ("decay_rate", "rmsprop", "alpha"),
        ("rho", "adadelta", "rho"),
        ("epsilon", "adagrad", "eps"),
        ("momentum", "lion", "beta1"),
        ("beta_2", "adam", "beta2"),
    ],
)
def test_aliases(alias: str, rule: str, name: str) -> None:
    import optcheck.rules as R

    names = [s.name for s in R.rule_class(rule).hyper_specs()]
    assert adapters.resolve_hyper(alias, names) == name
