"""Tests of optcheck.diagnose: the bug catalog, explain, identify and plot_divergence.

The first half works on trajectories built here (what the audit records), so that every
catalog id is exercised on every rule it applies to, registry-driven. The second half
runs the audit itself on the sample targets of ``tests/targets/``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optcheck._core.tree import flatten
from optcheck._trajectory import Trajectory, replay
from optcheck.diagnose import (
    CATALOG,
    CONVENTIONS,
    Bug,
    StatefulMutant,
    catalog_markdown,
    explain,
    identify,
    plot_divergence,
)
from optcheck.diagnose._mutants import realize
from optcheck.rules import Rule, get

ROOT = Path(__file__).resolve().parent.parent

REQUIRED_IDS = (
    "eps-outside-denominator",
    "non-square-term-in-second-moment",
    "weight-decay-in-second-moment-only",
    "weight-decay-missing",
    "weight-decay-coupled",
    "second-moment-not-squared",
    "missing-sqrt",
    "decay-rates-swapped",
    "missing-bias-correction",
    "bias-correction-wrong-step",
    "bias-correction-wrong-power",
    "bias-correction-compounds",
    "momentum-not-applied",
    "nesterov-missing-lookahead",
    "wrong-sign",
    "state-not-updated",
    "hyperparameter-mismatch",
)
REQUIRED_CONVENTIONS = (
    "eps-inside-sqrt",
    "eps-hat",
    "momentum-ema",
    "momentum-velocity",
    "no-decay-on-biases",
    "amsgrad-on-corrected",
    "adagrad-initial-accumulator",
    "nadam-keras-schedule",
    "float32-compute",
)

# Reference rules with settings under which every catalog bug has something to change.
RULE_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("adam", {"weight_decay": 0.01}),
    ("adamw", {"lr": 0.01}),
    ("rmsprop", {"alpha": 0.9, "weight_decay": 0.02}),
    ("rmsprop", {"momentum": 0.9, "centered": True}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("adagrad", {"weight_decay": 0.1}),
    ("nadam", {}),
]


def _case(
    seed: int, steps: int = 5, scale: float = 1.0
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = {"W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=(3,))}
    grads = [{k: rng.normal(size=v.shape) * scale for k, v in params.items()} for _ in range(steps)]
    return params, grads


def _trajectory_of(target: Rule, reference: Rule, seed: int = 0, **kw: Any) -> Trajectory:
    """What the audit records for a target that computes ``target``, audited against ``reference``.

    A target whose step divides by a zero Python float would, written with numpy arrays,
    return NaN/inf everywhere at that step: that is what is recorded then.
    """
    params, grads = _case(seed, **kw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = replay(target, params, grads)
    except ZeroDivisionError:
        nan = {k: np.full_like(v, np.nan) for k, v in params.items()}
        return Trajectory(rule=reference, params0=params, grads=grads, params=[nan])
    keys = reference.array_keys()
    states = [{k: s[k] for k in keys if k in s} for _, s in out]
    return Trajectory(rule=reference, params0=params, grads=grads, params=[p for p, _ in out], states=states)


def _applicable(bug: Bug) -> list[Rule]:
    rules = [get(name, **hyper) for name, hyper in RULE_CONFIGS]
    return [r for r in rules if bug.applies_to(r)]


# ---------------------------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------------------------


def test_catalog_has_every_required_id_and_the_conventions() -> None:
    assert set(REQUIRED_IDS) <= set(CATALOG)
    assert set(REQUIRED_CONVENTIONS) <= set(CONVENTIONS)
    assert not set(CATALOG) & set(CONVENTIONS)


@pytest.mark.parametrize("bug_id", list(CATALOG))
def test_every_bug_has_an_explanation_and_equations(bug_id: str) -> None:
    bug = CATALOG[bug_id]
    assert bug.id == bug_id
    assert bug.summary.endswith(".") and bug.summary.count(". ") == 0, "summary: one sentence"
    assert bug.wrong and bug.fix and bug.wrong != bug.fix
    assert bug.seen and bug.symptom


@pytest.mark.parametrize("bug_id", list(CATALOG))
def test_every_bug_applies_to_some_rule_and_its_mutant_differs(bug_id: str) -> None:
    bug = CATALOG[bug_id]
    rules = _applicable(bug)
    assert rules, f"{bug_id} applies to none of {RULE_CONFIGS}"
    for rule in rules:
        mutants = bug.mutant(rule)
        for mutant in mutants if isinstance(mutants, list) else [mutants]:
            assert isinstance(mutant, Rule)
            assert mutant.name == rule.name


def test_mutant_of_a_bug_that_does_not_apply_raises() -> None:
    with pytest.raises(ValueError, match="weight-decay-missing"):
        CATALOG["weight-decay-missing"].mutant(get("adam"))  # no weight decay to miss
    assert not CATALOG["nesterov-missing-lookahead"].applies_to(get("adam"))


@pytest.mark.parametrize("bug_id", list(CATALOG))
def test_mutants_are_pure(bug_id: str) -> None:
    """No mutant mutates the parameters, gradients or state it is given."""
    bug = CATALOG[bug_id]
    for rule in _applicable(bug):
        for variant in bug.variants(rule):
            mutant = variant.apply(rule)
            params, grads = _case(3, steps=2)
            state = mutant.init(params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:  # a first step to get a non-zero state
                    _, state = mutant.step(params, grads[0], state)
                except ZeroDivisionError:
                    continue
                inputs = {"params": params, "grads": grads[1], **{k: state[k] for k in mutant.array_keys()}}
                before = copy.deepcopy(inputs)
                mutant.step(params, grads[1], state)
            after = flatten(inputs)
            assert [p for p, _ in after] == [p for p, _ in flatten(before)]
            for (_, a), (_, b) in zip(after, flatten(before), strict=True):
                np.testing.assert_array_equal(a, b)


def test_stateful_mutant_freezes_and_compounds_without_mutating() -> None:
    rule = get("adam")
    params, grads = _case(1, steps=2)
    frozen = StatefulMutant(rule, freeze=("exp_avg",))
    s0 = frozen.init(params)
    _, s1 = frozen.step(params, grads[0], s0)
    assert s1["exp_avg"] is s0["exp_avg"] and s1["step"] == 1
    compounding = StatefulMutant(rule, compound=(("exp_avg", "beta1"),))
    _, c1 = compounding.step(params, grads[0], s0)
    _, r1 = rule.step(params, grads[0], s0)
    np.testing.assert_allclose(c1["exp_avg"]["W1"], r1["exp_avg"]["W1"] / (1 - 0.9), rtol=1e-15)
    assert frozen.name == "adam" and frozen.hyper == rule.hyper


# ---------------------------------------------------------------------------------------------
# explain: registry-driven over the catalog
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bug_id", list(CATALOG))
def test_every_mutant_is_diagnosed_with_its_own_id(bug_id: str) -> None:
    """A trajectory produced by each form of each bug, on each rule it applies to, is named by its id."""
    bug = CATALOG[bug_id]
    checked = 0
    for rule in _applicable(bug):
        for variant in bug.variants(rule):
            traj = _trajectory_of(variant.apply(rule), rule)
            expl = explain([traj])
            assert expl.verdict == "fail"
            assert bug_id in expl.ids, f"{rule!r} with {variant.label}: got {expl.matches}"
            d = next(d for d in expl.diagnoses if d.id == bug_id)
            assert d.evidence.max_error <= 1.0
            assert d.fix and d.message
            checked += 1
    assert checked


def test_correct_targets_pass_and_explain_reports_no_divergence() -> None:
    for name, hyper in RULE_CONFIGS:
        rule = get(name, **hyper)
        expl = explain([_trajectory_of(rule, rule)])
        assert expl.divergence is None and expl.verdict == "pass" and not expl.diagnoses


def test_hyperparameter_fit_reports_the_inferred_value() -> None:
    reference = get("adam")
    traj = _trajectory_of(get("adam", beta2=0.99), reference)
    expl = explain([traj])
    assert expl.ids == ("hyperparameter-mismatch",)
    (d,) = expl.diagnoses
    assert d.hyper == {"beta2": 0.99}
    assert "beta2=0.99" in d.message and "beta2=0.999" in d.message


def test_continuous_hyperparameter_fit_finds_a_value_nobody_types() -> None:
    """weight_decay = reg/batch = 0.7/32 where 0.02 was expected: found by the continuous fit."""
    reference = get("rmsprop", alpha=0.9, weight_decay=0.02)
    traj = _trajectory_of(get("rmsprop", alpha=0.9, weight_decay=0.7 / 32), reference)
    expl = explain([traj], budget=100_000)
    assert expl.ids == ("hyperparameter-mismatch",)
    assert expl.diagnoses[0].hyper["weight_decay"] == pytest.approx(0.021875, rel=1e-5)


def test_pairs_of_bugs_are_both_named() -> None:
    rule = get("adam")
    both = CATALOG["wrong-sign"].variants(rule)[0].combine(CATALOG["missing-sqrt"].variants(rule)[0])
    assert both is not None
    expl = explain([_trajectory_of(both.apply(rule), rule)])
    assert ("missing-sqrt", "wrong-sign") in expl.matches or ("wrong-sign", "missing-sqrt") in expl.matches
    for d in expl.diagnoses:
        assert d.together_with


def test_conventions_pass_with_the_convention_named() -> None:
    cases = [
        (get("adam", eps_placement="hat"), get("adam"), "eps-hat"),
        (get("rmsprop", eps_placement="inside-sqrt"), get("rmsprop"), "eps-inside-sqrt"),
        (
            get("sgd", lr=0.1, momentum=0.9, momentum_form="ema"),
            get("sgd", lr=0.1, momentum=0.9),
            "momentum-ema",
        ),
        (
            get("sgd", lr=0.1, momentum=0.9, momentum_form="velocity"),
            get("sgd", lr=0.1, momentum=0.9),
            "momentum-velocity",  # same parameters as torch's for a constant lr; the buffer tells
        ),
        (
            get("adam", amsgrad=True, amsgrad_on="corrected"),
            get("adam", amsgrad=True),
            "amsgrad-on-corrected",
        ),
        (get("adagrad", initial_accumulator_value=0.1), get("adagrad"), "adagrad-initial-accumulator"),
        (get("nadam", momentum_schedule="keras"), get("nadam"), "nadam-keras-schedule"),
    ]
    for target, reference, conv in cases:  # two cases each, the state mapped
        expl = explain([_trajectory_of(target, reference, seed=s) for s in range(2)])
        assert expl.verdict == "pass", (target, expl.text())
        assert expl.convention is not None and expl.convention.id == conv
        assert not expl.diagnoses
        assert expl.convention.rule.hyper != reference.hyper


def test_no_decay_on_biases_is_a_convention_and_its_rule_has_the_parameter_groups() -> None:
    reference = get("adam", weight_decay=0.1)
    target = reference
    params, grads = _case(0)
    overrides = {("b1",): reference.replace(weight_decay=0.0)}
    out = replay(target, params, grads, overrides=overrides)
    traj = Trajectory(reference, params, grads, [p for p, _ in out])
    expl = explain([traj])
    assert expl.verdict == "pass"
    assert expl.convention is not None and expl.convention.id == "no-decay-on-biases"
    assert expl.convention.overrides[("b1",)].hyper["weight_decay"] == 0.0
    _, groups = expl.convention.realize({"W": np.ones((2, 2)), "bias": np.ones(2)})
    assert list(groups) == [("bias",)]


def test_float32_compute_is_a_convention_only_for_values_of_float32() -> None:
    rule = get("adam")
    params, grads = _case(0)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    g32 = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads]
    out = replay(rule, p32, g32)
    traj = Trajectory(rule, params, grads, [{k: v.astype(np.float64) for k, v in p.items()} for p, _ in out])
    expl = explain([traj])
    assert expl.convention is not None and expl.convention.id == "float32-compute"
    assert expl.convention.compute_dtype == "float32"
    # a float64 target with a small bug is not "float32 compute"
    eps_bug = CATALOG["eps-outside-denominator"].variants(rule)[0].apply(rule)
    expl = explain([_trajectory_of(eps_bug, rule)])
    assert expl.convention is None and expl.ids == ("eps-outside-denominator",)


def test_unexplained_difference_reports_the_first_divergence() -> None:
    reference = get("rmsprop")
    params, grads = _case(0)
    out = replay(reference, params, grads)
    weird = [{k: v + 0.1 * (i + 1) for k, v in p.items()} for i, (p, _) in enumerate(out)]
    expl = explain([Trajectory(reference, params, grads, weird)], budget=5000)
    assert expl.verdict == "fail" and not expl.diagnoses
    assert expl.divergence is not None and expl.divergence.step == 1
    assert "differs-from-reference" in expl.text()


def test_state_keys_the_target_reports_decide_between_equivalent_mutants() -> None:
    """A frozen momentum buffer and a momentum never applied move the parameters alike; the state tells."""
    rule = get("rmsprop", momentum=0.9)
    (frozen,) = [v for v in CATALOG["state-not-updated"].variants(rule) if v.freeze == ("momentum_buffer",)]
    expl = explain([_trajectory_of(frozen.apply(rule), rule)])
    assert expl.ids == ("state-not-updated",)


def test_explain_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="trajectories is empty"):
        explain([])
    with pytest.raises(TypeError, match=r"trajectories\[0\] is a int"):
        explain([1])  # type: ignore[list-item]
    traj = _trajectory_of(get("adam"), get("adam"))
    with pytest.raises(ValueError, match="budget=0"):
        explain([traj], budget=0)


# ---------------------------------------------------------------------------------------------
# The seed problem
# ---------------------------------------------------------------------------------------------


def _load(path: Path, name: str) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location(f"_diag_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)  # type: ignore[no-any-return]


def _course_trajectory(update: Callable[..., Any], seed: int, scale: float) -> Trajectory:
    """Call a course-style ``update(parameters, grads, S)`` as a training loop would (copies in, copies out)."""
    rng = np.random.default_rng(seed)
    p0 = {
        "W1": rng.normal(size=(3, 4)),
        "b1": rng.normal(size=(3, 1)),
        "W2": rng.normal(size=(1, 3)),
        "b2": rng.normal(size=(1, 1)),
    }
    grads = [{k: rng.normal(size=v.shape) * scale for k, v in p0.items()} for _ in range(5)]
    rule = get("rmsprop", alpha=0.9, lr=0.01, eps=1e-8, weight_decay=0.7 / 32)
    overrides = {("b1",): rule.replace(weight_decay=0.0), ("b2",): rule.replace(weight_decay=0.0)}
    params = copy.deepcopy(p0)
    S = {"d" + k: np.zeros_like(v) for k, v in p0.items()}
    outs: list[dict[str, np.ndarray]] = []
    states: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for g in grads:
            params, S = update(copy.deepcopy(params), {"d" + k: v for k, v in g.items()}, copy.deepcopy(S))
            outs.append(copy.deepcopy(params))
            states.append({"square_avg": {k: S["d" + k].copy() for k in p0}})
    names = {"params": "parameters", "grads": "grads", "square_avg": "S"}
    return Trajectory(rule, p0, grads, outs, states=states, overrides=overrides, names=names)


SEED = ROOT / "examples" / "rmsprop_nan.py"
FIXED = ROOT / "examples" / "rmsprop_fixed.py"


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_the_seed_function_has_both_bugs_named(scale: float) -> None:
    update = _load(SEED, "update_parameters_with_rmsprop")
    expl = explain([_course_trajectory(update, s, scale) for s in range(4)])
    assert set(expl.ids) == {"non-square-term-in-second-moment", "eps-outside-denominator"}
    assert len(expl.matches) == 1 and len(expl.matches[0]) == 2
    non_square = next(d for d in expl.diagnoses if d.id == "non-square-term-in-second-moment")
    assert "S ← β·S + (1−β)·(g + λp)²" in non_square.fix  # in the user's own name for the state
    assert "negative-second-moment" in non_square.explains
    assert "parameters['" in non_square.message
    if scale == 0.01:  # small gradients: S goes negative at the first step, and NaN follows
        assert non_square.evidence.nonfinite_step == 1


def test_the_fixed_seed_passes() -> None:
    update = _load(FIXED, "update_parameters_with_rmsprop")
    expl = explain([_course_trajectory(update, s, 1.0) for s in range(3)])
    assert expl.divergence is None and expl.verdict == "pass"


def _partial_fix_square(
    parameters: Any,
    grads: Any,
    S: Any,
    learning_rate: float = 0.01,
    beta: float = 0.9,
    epsilon: float = 1e-8,
    reg_param: float = 0.7,
    batch_size: int = 32,
) -> Any:
    """The seed with the penalty moved inside the square; the step (and its epsilon) unchanged."""
    for layer in (1, 2):
        W, b = f"W{layer}", f"b{layer}"
        dW = grads["d" + W] + (reg_param / batch_size) * parameters[W]
        db = grads["d" + b]
        S["d" + W] = (
            beta * S["d" + W] + (1 - beta) * (grads["d" + W] + (reg_param / batch_size) * parameters[W]) ** 2
        )
        S["d" + b] = beta * S["d" + b] + (1 - beta) * db**2
        parameters[W] = parameters[W] - learning_rate * (dW / np.sqrt(S["d" + W]) + epsilon)
        parameters[b] = parameters[b] - learning_rate * (db / np.sqrt(S["d" + b]) + epsilon)
    return parameters, S


def _partial_fix_raw_step(
    parameters: Any,
    grads: Any,
    S: Any,
    learning_rate: float = 0.01,
    beta: float = 0.9,
    epsilon: float = 1e-8,
    reg_param: float = 0.7,
    batch_size: int = 32,
) -> Any:
    """The penalty moved inside the square and epsilon fixed, but the step uses the raw gradient."""
    for layer in (1, 2):
        W, b = f"W{layer}", f"b{layer}"
        dW = grads["d" + W]
        db = grads["d" + b]
        S["d" + W] = beta * S["d" + W] + (1 - beta) * (dW + (reg_param / batch_size) * parameters[W]) ** 2
        S["d" + b] = beta * S["d" + b] + (1 - beta) * db**2
        parameters[W] = parameters[W] - learning_rate * dW / (np.sqrt(S["d" + W]) + epsilon)
        parameters[b] = parameters[b] - learning_rate * db / (np.sqrt(S["d" + b]) + epsilon)
    return parameters, S


def test_partial_fixes_of_the_seed_are_named() -> None:
    expl = explain([_course_trajectory(_partial_fix_square, s, 1.0) for s in range(3)])
    assert expl.ids == ("eps-outside-denominator",)
    expl = explain([_course_trajectory(_partial_fix_raw_step, s, 1.0) for s in range(3)])
    assert expl.ids == ("weight-decay-in-second-moment-only",)


# ---------------------------------------------------------------------------------------------
# identify (--rule auto)
# ---------------------------------------------------------------------------------------------


def _auto_trajectories(target: Rule, n: int = 2) -> list[Trajectory]:
    """Trajectories as ``--rule auto`` records them: the rule is a placeholder, the state unmapped."""
    out = []
    for s in range(n):
        params, grads = _case(10 + s, steps=6)
        run = replay(target, params, grads)
        out.append(Trajectory(get("adam"), params, grads, [p for p, _ in run]))
    return out


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (get("rmsprop", lr=0.01, alpha=0.9), {"name": "rmsprop", "alpha": 0.9, "lr": 0.01}),
        (get("sgd", lr=0.1, momentum=0.9), {"name": "sgd", "momentum": 0.9, "lr": 0.1}),
        (get("adam", lr=0.01, beta2=0.99), {"name": "adam", "beta2": 0.99, "lr": 0.01}),
        (get("adagrad", lr=0.1), {"name": "adagrad", "lr": 0.1}),
    ],
)
def test_identify_finds_the_rule_and_its_hyperparameters(target: Rule, expected: Mapping[str, Any]) -> None:
    ident = identify(_auto_trajectories(target))
    assert ident.matched and ident.rule is not None
    assert ident.name == expected["name"]
    for k, v in expected.items():
        if k != "name":
            assert ident.rule.hyper[k] == pytest.approx(v)
    assert ident.message().startswith(f"identified {expected['name']}(")


def test_identify_names_a_convention_and_a_bug() -> None:
    ident = identify(_auto_trajectories(get("rmsprop", lr=0.001, alpha=0.9, eps_placement="inside-sqrt")))
    assert ident.matched and ident.name == "rmsprop" and ident.conventions == ("eps-inside-sqrt",)
    rmsprop = get("rmsprop", lr=0.01, alpha=0.9)
    buggy = CATALOG["eps-outside-denominator"].variants(rmsprop)[0].apply(rmsprop)
    ident = identify(_auto_trajectories(buggy))
    assert ident.matched and ident.name == "rmsprop" and ident.bugs == ("eps-outside-denominator",)
    assert "with the bug eps-outside-denominator" in ident.message()


# ---------------------------------------------------------------------------------------------
# plot_divergence (--plot)
# ---------------------------------------------------------------------------------------------


def test_plot_divergence_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    update = _load(SEED, "update_parameters_with_rmsprop")
    traj = _course_trajectory(update, 0, 0.3)
    out = plot_divergence(traj, None, tmp_path / "div.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # against another rule, and for a target that agrees with it
    rule = get("adam")
    same = _trajectory_of(rule, rule)
    assert plot_divergence(same, rule, tmp_path / "same.png").exists()


def test_plot_divergence_rejects_bad_arguments(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rule = get("adam")
    traj = _trajectory_of(rule, rule)
    with pytest.raises(TypeError, match="trajectory is a dict"):
        plot_divergence({}, rule, tmp_path / "x.png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reference_rule is a str"):
        plot_divergence(traj, "adam", tmp_path / "x.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):  # a bad path= is a usage error
        plot_divergence(traj, rule, tmp_path / "missing" / "x.png")


# ---------------------------------------------------------------------------------------------
# Documentation and import weight
# ---------------------------------------------------------------------------------------------


def test_the_bug_catalog_page_is_generated_from_the_catalog() -> None:
    page = (ROOT / "docs" / "bugs.md").read_text(encoding="utf-8")
    assert page == catalog_markdown(), (
        'docs/bugs.md is out of date; regenerate it with: python -c "import optcheck.diagnose as d; '
        "open('docs/bugs.md', 'w').write(d.catalog_markdown())\""
    )
    for bug in CATALOG.values():
        assert f"## `{bug.id}`" in page and bug.fix in page


def test_importing_diagnose_stays_light() -> None:
    code = (
        "import sys, optcheck.diagnose; "
        "print([m for m in ('matplotlib', 'torch', 'hypothesis', 'scipy', 'pytest') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Issue 13: published conventions, bug forms, determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "reference", "conv"),
    [
        (get("rmsprop", square_avg_init="ones"), get("rmsprop"), "square-avg-init-one"),
        (
            get("adafactor", eps1_placement="add", eps1=1e-30),
            get("adafactor", eps1=1e-30),
            "adafactor-eps1-added",
        ),
        (get("adamax", eps_placement="outside-max"), get("adamax"), "adamax-eps-outside-max"),
        (
            get("adamw", weight_decay=0.1, decay_when="after-step"),
            get("adamw", weight_decay=0.1),
            "decay-after-step",
        ),
        (get("nadam", momentum_schedule="mlcommons"), get("nadam"), "nadamw-mlcommons"),
        (
            get("adam", weight_decay=0.1, decoupled_weight_decay=True),
            get("adam", weight_decay=0.1),
            "decoupled-decay",
        ),
        (
            get("sgd", lr=0.1, momentum=0.9, weight_decay=0.1, weight_decay_form="decoupled"),
            get("sgd", lr=0.1, momentum=0.9, weight_decay=0.1),
            "decoupled-decay",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_published_conventions_pass_with_the_convention_named(
    target: Rule, reference: Rule, conv: str
) -> None:
    trajs = [_trajectory_of(target, reference, seed=s, scale=sc) for s, sc in ((0, 1.0), (1, 1e-12))]
    expl = explain(trajs)
    assert expl.verdict == "pass", expl.text()
    assert conv in [c.id for c in expl.conventions]
    assert CONVENTIONS[conv].source


def test_radam_no_update_window_is_a_convention_over_both_phases() -> None:
    reference = get("radam")
    assert reference.phase_steps() == 6
    traj = _trajectory_of(get("radam", unrectified="none"), reference, steps=8)
    expl = explain([traj])
    assert expl.verdict == "pass" and expl.convention is not None
    assert expl.convention.id == "radam-no-update-window"


def test_bert_adam_is_missing_bias_correction_under_per_tensor_clipping() -> None:
    reference = get("adamw", weight_decay=0.01)
    mutant = CATALOG["missing-bias-correction"].variants(reference)[0]
    clipped = dataclasses.replace(mutant, clip_norm=1.0).apply(reference)
    expl = explain([_trajectory_of(clipped, reference, seed=s) for s in range(2)])
    assert "missing-bias-correction" in expl.ids
    d = next(d for d in expl.diagnoses if d.id == "missing-bias-correction")
    assert d.convention == "per-tensor-gradient-clipping"


@pytest.mark.parametrize(
    ("only", "bug_id"),
    [("biases", "missing-sqrt"), ("weights", "wrong-sign"), ("['W1']", "second-moment-not-squared")],
)
def test_a_bug_on_one_parameter_group_is_named(only: str, bug_id: str) -> None:
    reference = get("adam")
    variant = dataclasses.replace(CATALOG[bug_id].variants(reference)[0], only=only)
    params, grads = _case(0)
    rule, overrides = realize(variant, reference, {}, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = replay(rule, params, grads, None, overrides)
    traj = Trajectory(reference, params, grads, [p for p, _ in out], None)
    expl = explain([traj])
    assert bug_id in expl.ids, expl.text()
    d = next(d for d in expl.diagnoses if d.id == bug_id)
    assert "only" in d.variant


@pytest.mark.parametrize("frozen_at", [2, 3])
def test_a_counter_frozen_at_a_later_step_is_named(frozen_at: int) -> None:
    reference = get("adam")
    forms = CATALOG["bias-correction-wrong-step"].variants(reference)
    variant = next(v for v in forms if v.label == f"step counter frozen at {frozen_at}")
    expl = explain([_trajectory_of(variant.apply(reference), reference)])
    assert "bias-correction-wrong-step" in expl.ids
    assert f"frozen at {frozen_at}" in expl.diagnoses[0].variant


def test_the_diagnosis_does_not_consult_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets are counts: a clock that jumps an hour per reading changes nothing."""
    from optcheck.diagnose import _search

    reference = get("adam", weight_decay=0.01)
    trajs = [_trajectory_of(CATALOG["missing-sqrt"].mutant(reference), reference)]  # type: ignore[arg-type]
    before = explain(trajs)

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            self.now += 3600.0
            return self.now

    monkeypatch.setattr(_search.time, "perf_counter", Clock())
    after = explain(trajs)
    assert after.ids == before.ids and after.candidates == before.candidates
    assert after.complete and before.complete
    small = explain(trajs, budget=3)
    assert small.candidates <= 3 and not small.complete


def test_every_catalog_entry_carries_its_source() -> None:
    for entry in [*CATALOG.values(), *CONVENTIONS.values()]:
        assert entry.source, entry.id
