"""The one name map (optcheck.rules.naming): the guard and the audit accept the same names.

The tables below are names found in published optimizer code (course notebooks, cs231n,
school projects, torch, Keras, autograd, sklearn); each is fed to both front ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import optcheck
import optcheck.rules as R
from optcheck._core.errors import UsageError
from optcheck.audit import adapters
from optcheck.audit._common import ParamInfo, TargetInfo
from optcheck.rules import naming

# (rule, rule hyperparameters, the user's state names, the rule keys they must map to)
STATE_NAMES: list[tuple[str, dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [
    ("adam", {}, ("v", "s"), ("exp_avg", "exp_avg_sq")),  # the course
    ("adam", {}, ("m", "v"), ("exp_avg", "exp_avg_sq")),  # the paper
    ("adam", {}, ("M", "V"), ("exp_avg", "exp_avg_sq")),
    ("adam", {}, ("moment1", "moment2"), ("exp_avg", "exp_avg_sq")),
    ("adam", {}, ("exp_avg", "exp_avg_sq"), ("exp_avg", "exp_avg_sq")),  # torch
    ("adam", {}, ("first_moment", "second_moment"), ("exp_avg", "exp_avg_sq")),
    ("adam", {"amsgrad": True}, ("m", "v", "v_max"), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    ("adamw", {}, ("m_t", "v_t"), ("exp_avg", "exp_avg_sq")),
    ("nadam", {}, ("m", "v"), ("exp_avg", "exp_avg_sq")),
    ("radam", {}, ("exp_avg", "exp_avg_sq"), ("exp_avg", "exp_avg_sq")),
    ("adamax", {}, ("m", "u"), ("exp_avg", "exp_inf")),
    ("rmsprop", {}, ("S",), ("square_avg",)),  # the course
    ("rmsprop", {}, ("s",), ("square_avg",)),
    ("rmsprop", {}, ("cache",), ("square_avg",)),  # cs231n
    ("rmsprop", {}, ("square_avg",), ("square_avg",)),
    ("rmsprop", {}, ("Eg2",), ("square_avg",)),
    ("rmsprop", {"momentum": 0.9}, ("V", "S"), ("momentum_buffer", "square_avg")),
    ("adadelta", {}, ("Eg2", "Edx2"), ("square_avg", "acc_delta")),
    ("adadelta", {}, ("E_g2", "E_dx2"), ("square_avg", "acc_delta")),
    ("adadelta", {}, ("square_avg", "acc_delta"), ("square_avg", "acc_delta")),
    ("adadelta", {}, ("accum_grad", "accum_update"), ("square_avg", "acc_delta")),
    ("adagrad", {}, ("G",), ("sum",)),
    ("adagrad", {}, ("cache",), ("sum",)),
    ("adagrad", {}, ("sum",), ("sum",)),
    ("adagrad", {}, ("accumulator",), ("sum",)),
    ("sgd", {"momentum": 0.9}, ("v",), ("momentum_buffer",)),
    ("sgd", {"momentum": 0.9}, ("velocity",), ("momentum_buffer",)),
    ("sgd", {"momentum": 0.9}, ("mom",), ("momentum_buffer",)),
    ("sgd", {"momentum": 0.9}, ("momentum_buffer",), ("momentum_buffer",)),
    ("lion", {}, ("m",), ("exp_avg",)),
]

# (rule, the user's hyperparameter names with values, what they must mean)
HYPER_NAMES: list[tuple[str, dict[str, float], dict[str, float]]] = [
    (
        "adam",
        {"learning_rate": 0.02, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7},
        {"lr": 0.02, "beta1": 0.8},
    ),
    ("adam", {"lr": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-7}, {"beta2": 0.99, "eps": 1e-7}),
    ("adam", {"alpha": 0.02, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7}, {"lr": 0.02}),  # school style
    ("adam", {"step_size": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-7}, {"lr": 0.02}),  # autograd
    (
        "adam",
        {"learning_rate_init": 0.02, "beta_1": 0.8, "beta_2": 0.99},
        {"lr": 0.02, "beta2": 0.99},
    ),  # sklearn
    (
        "adam",
        {"stepsize": 0.02, "decay1": 0.8, "decay2": 0.99, "e": 1e-7},
        {"lr": 0.02, "beta1": 0.8, "eps": 1e-7},
    ),
    ("rmsprop", {"learning_rate": 0.02, "beta": 0.8, "epsilon": 1e-7}, {"lr": 0.02, "alpha": 0.8}),  # course
    ("rmsprop", {"learning_rate": 0.02, "decay_rate": 0.8}, {"alpha": 0.8}),  # cs231n
    ("rmsprop", {"lr": 0.02, "alpha": 0.8}, {"lr": 0.02, "alpha": 0.8}),  # torch
    ("rmsprop", {"learning_rate": 0.02, "rho": 0.8}, {"alpha": 0.8}),  # Keras
    ("rmsprop", {"alpha": 0.02, "beta2": 0.8, "epsilon": 1e-7}, {"lr": 0.02, "alpha": 0.8}),  # school style
    ("rmsprop", {"step_size": 0.02, "gamma": 0.8, "eps": 1e-7}, {"lr": 0.02, "alpha": 0.8}),  # autograd
    ("adadelta", {"rho": 0.8, "epsilon": 1e-5}, {"rho": 0.8, "eps": 1e-5}),
    ("sgd", {"learning_rate": 0.02, "beta": 0.8}, {"lr": 0.02, "momentum": 0.8}),  # course momentum
    ("sgd", {"step_size": 0.02, "mass": 0.8}, {"lr": 0.02, "momentum": 0.8}),  # autograd
    ("sgd", {"lr": 0.02, "momentum": 0.8, "weight_decay": 0.1}, {"weight_decay": 0.1}),
    ("adagrad", {"learning_rate": 0.02, "epsilon": 1e-7}, {"lr": 0.02, "eps": 1e-7}),
    ("nadam", {"learning_rate": 0.02, "schedule_decay": 0.01}, {"momentum_decay": 0.01}),  # Keras 2
    ("lion", {"learning_rate": 0.02, "momentum": 0.8}, {"beta1": 0.8}),
]


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W1": rng.normal(size=(3, 2)), "b1": rng.normal(size=(3, 1))}


def _course_update(rule: R.Rule, names: tuple[str, ...], keys: tuple[str, ...]) -> Any:
    """A correct course-style update ``f(parameters, grads, <names>, t)`` with the user's own state names."""
    args = ", ".join(names)
    src = f"def update(parameters, grads, {args}, t):\n    return _step(parameters, grads, [{args}], t)\n"

    scalars: dict[str, Any] = {}  # the rule's own schedule numbers (NAdam's mu_product), carried along

    def _step(parameters: Any, grads: Any, states: list[Any], t: int) -> Any:
        plain = {k: grads["d" + k] for k in parameters}
        if not scalars:
            scalars.update({k: v for k, v in rule.init(parameters).items() if k in rule.scalar_states})
        state: dict[str, Any] = {**scalars, "step": t - 1}
        for key, tree in zip(keys, states, strict=True):
            state[key] = {k: tree["d" + k] for k in parameters}
        new_p, new_s = rule.step(parameters, plain, state)
        scalars.update({k: new_s[k] for k in rule.scalar_states})
        for k in parameters:
            parameters[k][...] = new_p[k]
            for key, tree in zip(keys, states, strict=True):
                tree["d" + k][...] = new_s[key][k]

    scope: dict[str, Any] = {"_step": _step}
    exec(src, scope)
    return scope["update"]


@pytest.mark.parametrize(("rule_name", "hyper", "names", "keys"), STATE_NAMES)
def test_guard_accepts_the_state_names(
    rule_name: str, hyper: dict[str, Any], names: tuple[str, ...], keys: tuple[str, ...]
) -> None:
    rule = R.get(rule_name, **hyper)
    update = optcheck.guarded(_course_update(rule, names, keys), rule=rule, shadow=True)
    params = _params()
    states = [{"d" + k: np.zeros_like(v) for k, v in params.items()} for _ in names]
    rng = np.random.default_rng(1)
    for t in range(1, 4):
        grads = {"d" + k: rng.normal(size=v.shape) for k, v in params.items()}
        update(params, grads, *states, t)
    assert update.guard.checked == 3
    assert dict(update.guard.map_states(names).keys) == dict(zip(names, keys, strict=True))


@pytest.mark.parametrize(("rule_name", "hyper", "names", "keys"), STATE_NAMES)
def test_audit_accepts_the_state_names(
    rule_name: str, hyper: dict[str, Any], names: tuple[str, ...], keys: tuple[str, ...]
) -> None:
    info = TargetInfo(
        "x.py:f",
        "f",
        "function",
        tuple(
            ParamInfo(n, "POSITIONAL_OR_KEYWORD", False, None, "None")
            for n in ("parameters", "grads", *names)
        ),
    )
    b = adapters.bind(info, "dict", R.rule_class(rule_name), {}, {})
    assert b.plan.state_names == list(names)
    assert adapters.map_states(names, R.get(rule_name, **hyper)) == dict(zip(names, keys, strict=True))


@pytest.mark.parametrize(("rule_name", "given", "means"), HYPER_NAMES)
def test_guard_and_rules_get_accept_the_hyperparameter_names(
    rule_name: str, given: dict[str, float], means: dict[str, float]
) -> None:
    rule = R.get(rule_name, **given)
    guard = optcheck.Guard(rule_name, **given)
    for name, value in means.items():
        assert getattr(rule, name) == value
        assert getattr(guard.rule, name) == value


@pytest.mark.parametrize(("rule_name", "given", "means"), HYPER_NAMES)
def test_audit_accepts_the_hyperparameter_names(
    rule_name: str, given: dict[str, float], means: dict[str, float]
) -> None:
    names = ("parameters", "grads", *given)
    info = TargetInfo(
        "x.py:f",
        "f",
        "function",
        tuple(
            ParamInfo(n, "POSITIONAL_OR_KEYWORD", n in given, given.get(n), repr(given.get(n))) for n in names
        ),
    )
    b = adapters.bind(info, "dict", R.rule_class(rule_name), {}, {})
    for name, value in means.items():
        assert b.ref_hyper[name] == value


def test_the_course_rmsprop_with_an_unused_v_starts_under_the_guard() -> None:
    """``update_parameters(parameters, gradients, V, S, batch_size, t, learning_rate, reg_param)``, V never used."""

    def update_parameters(
        parameters: Any,
        gradients: Any,
        V: Any,
        S: Any,
        batch_size: int,
        t: int,
        learning_rate: float,
        reg_param: float,
    ) -> Any:
        for k in parameters:
            g = gradients["d" + k] + (reg_param / batch_size) * parameters[k] * k.startswith("W")
            S["d" + k] = 0.9 * S["d" + k] + 0.1 * g**2
            parameters[k] = parameters[k] - learning_rate * g / (np.sqrt(S["d" + k]) + 1e-8)
        return parameters, V, S

    update = optcheck.guarded(update_parameters, rule="rmsprop", beta=0.9, shadow=True)
    params = _params()
    V = {"d" + k: np.zeros_like(v) for k, v in params.items()}
    S = {"d" + k: np.zeros_like(v) for k, v in params.items()}
    for t in range(1, 3):
        grads = {"d" + k: np.ones_like(v) for k, v in params.items()}
        params, V, S = update(params, grads, V, S, 32, t, 0.01, 0.5)
    assert update.guard.checked == 2
    assert update.guard.rule.lr == 0.01  # read from the call
    assert update.guard.notes == [
        "course L2: weight_decay = reg_param/batch_size = 0.015625 on the weights W1, W2, ... (not the biases)",
        "'V' is none of rmsprop's states and the target never changed it; it was ignored",
    ]


def test_an_unplaced_state_that_changes_is_one_clear_error() -> None:
    def update(parameters: Any, grads: Any, V: Any, S: Any) -> None:
        for k in parameters:
            V["d" + k] += grads["d" + k]
            S["d" + k] += grads["d" + k] ** 2

    guarded = optcheck.guarded(update, rule="rmsprop")
    params = _params()
    V = {"d" + k: np.zeros_like(v) for k, v in params.items()}
    S = {"d" + k: np.zeros_like(v) for k, v in params.items()}
    grads = {"d" + k: np.ones_like(v) for k, v in params.items()}
    with pytest.raises(
        UsageError, match=r"cannot tell which rmsprop state 'V' is; pass roles=\{'V': \.\.\.\}.*momentum"
    ):
        guarded(params, grads, V, S)


def test_the_alpha_of_rmsprop_is_judged_by_context() -> None:
    rms = R.get("rmsprop")
    assert naming.resolve_hypers(["lr", "alpha"], rms) == {"lr": "lr", "alpha": "alpha"}
    assert naming.resolve_hypers(["alpha", "beta2"], rms) == {"alpha": "lr", "beta2": "alpha"}
    assert naming.resolve_hypers(["alpha"], rms) == {"alpha": "alpha"}
    assert naming.resolve_hypers(["alpha", "beta1"], R.get("adam")) == {"alpha": "lr", "beta1": "beta1"}
    assert naming.resolve_hyper("alpha", R.get("asgd")) == "alpha"


def test_two_spellings_must_agree() -> None:
    assert R.get("adam", lr=0.01, learning_rate=0.01).lr == 0.01
    with pytest.raises(UsageError, match=r"adam: lr=0\.01 and learning_rate=0\.02 both set lr; give one"):
        R.get("adam", lr=0.01, learning_rate=0.02)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['lerning_rate'\]"):
        R.get("adam", lerning_rate=0.01)


def test_course_l2_names() -> None:
    assert naming.is_course_l2("reg_param") and naming.is_course_l2("lambd", R.get("sgd"))
    assert not naming.is_course_l2("lambd", R.get("asgd"))  # ASGD's own lambd
    assert R.get("sgd", reg_param=0.1).weight_decay == 0.1


def test_step_names() -> None:
    for name in ("t", "step", "iteration", "iter", "k", "n_iter", "timestep", "self.t", "T"):
        assert naming.is_step_name(name), name
    for name in ("lr", "v", "beta"):
        assert not naming.is_step_name(name)


def test_state_names_the_map_cannot_place() -> None:
    m = naming.map_states(R.get("adam"), ["foo", "bar"])
    assert m.unplaced == ("foo", "bar") and not m.keys
    single = naming.map_states(R.get("adagrad"), ["whatever"])
    assert single.keys == {"whatever": "sum"} and single.how == {"whatever": "only-one"}
    wrong_group = naming.map_states(R.get("adagrad"), ["m"])  # a first moment is not an accumulator
    assert wrong_group.unplaced == ("m",)
    assert naming.map_states(R.get("adam"), ["v", "s", "t"]).keys == {
        "t": "step",
        "v": "exp_avg",
        "s": "exp_avg_sq",
    }
    assert naming.map_states(None, ["S"], {"S": "second-moment"}).roles == {"S": "second-moment"}


def test_roles_are_validated_with_the_valid_choices() -> None:
    with pytest.raises(UsageError, match=r"neither a adam state"):
        naming.role_or_key(R.get("adam"), "S", "nonsense")
    with pytest.raises(UsageError, match=r"several adadelta states have that role"):
        naming.role_or_key(R.get("adadelta"), "S", "second-moment")


def test_changed_hyper_names_the_rule_as_a_message_writes_it() -> None:
    assert naming.changed_hyper(R.get("rmsprop", alpha=0.9)) == {"alpha": 0.9}
    assert naming.changed_hyper(R.get("rmsprop"), keep=["lr"]) == {"lr": 0.01}
    assert naming.changed_hyper(R.get("adam")) == {}


def test_course_weights_are_the_w_keys() -> None:
    assert [k for k in ("W1", "b1", "W2", "b2", 3) if naming.is_course_weight(k)] == ["W1", "W2"]
