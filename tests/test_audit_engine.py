"""Tests of optcheck.audit.engine (run_audit end to end): every adapter with a correct and a buggy target,
hostile targets, conventions. Binding is tested in test_audit_adapters.py.

Most audits run with fewer examples than the default (``FAST``) to keep the suite quick; the
probes and the search still have to find every bug asserted here.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optcheck.audit import AuditReport, run_audit

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tests" / "targets"
EXAMPLES = ROOT / "examples"
FAST: dict[str, Any] = {"examples": 8, "steps": 3}

try:
    import torch  # noqa: F401

    HAS_TORCH = True
except ImportError:  # pragma: no cover - torch is in the test environment
    HAS_TORCH = False

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")


def target(file: str, name: str) -> str:
    return f"{TARGETS / file}:{name}"


def finding(report: AuditReport, fid: str) -> Any:
    for f in report.findings:
        if f.id == fid:
            return f
    raise AssertionError(f"no finding {fid!r} in {report.ids()}:\n{report.render_text()}")


# ---------------------------------------------------------------------------------------------
# Every adapter: a correct target passes, a buggy one fails with the right finding
# ---------------------------------------------------------------------------------------------

CORRECT = [
    pytest.param("dict", "dict_correct.py", "update_parameters_with_adam", "adam", {}, {}, id="dict"),
    pytest.param(
        "dict", "dict_correct-inplace.py", "rmsprop_update", "rmsprop", {}, {}, id="dict-inplace-same-keys"
    ),
    pytest.param(
        "dict", "dict_correct-extra-arg.py", "update_parameters", "sgd", {}, {"clip": 1e300}, id="dict-arg"
    ),
    pytest.param("config", "config_correct.py", "adam", "adam", {"lr": 0.01}, {}, id="config"),
    pytest.param(
        "functional", "functional_correct.py", "step", "adam", {"betas": (0.8, 0.99)}, {}, id="functional"
    ),
    pytest.param("object", "object_correct.py", "Adam", "adam", {"learning_rate": 0.01}, {}, id="object"),
    pytest.param(
        "torch",
        "torch_correct.py",
        "MyRMSprop",
        "rmsprop",
        {"weight_decay": 0.1, "lr": 0.05},
        {},
        id="torch",
        marks=[needs_torch, pytest.mark.slow],
    ),
]


@pytest.mark.parametrize(("style", "file", "name", "rule", "hyper", "args"), CORRECT)
def test_correct_target_passes(style: str, file: str, name: str, rule: str, hyper: dict, args: dict) -> None:
    report = run_audit(target(file, name), rule, hyper=hyper, args=args, **FAST)
    assert report.style == style
    assert report.verdict == "pass", report.render_text()
    assert report.errors == []
    assert report.cases >= FAST["examples"]
    for arg, value in hyper.items():  # the hyperparameters reach the target
        if arg in dict(report.binding):
            assert repr(value) in dict(report.binding)[arg]


BUGGY = [
    pytest.param("dict", "dict_shape-changed.py", "update_parameters", "sgd", {}, "shape-changed", id="dict"),
    pytest.param(
        "dict",
        "dict_input-mutated.py",
        "update_parameters_with_rmsprop",
        "rmsprop",
        {},
        "input-mutated",
        id="dict-input-mutated",
    ),
    pytest.param("config", "config_dtype-changed.py", "rmsprop", "rmsprop", {}, "dtype-changed", id="config"),
    pytest.param("config", "config_bad-return.py", "sgd", "sgd", {}, "bad-return", id="config-bad-return"),
    pytest.param(
        "functional",
        "functional_nondeterministic.py",
        "step",
        "adagrad",
        {},
        "nondeterministic",
        id="functional",
    ),
    pytest.param(
        "object",
        "object_nondeterministic.py",
        "Adam",
        "adam",
        {},
        "nondeterministic",
        id="object",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "torch",
        "torch_input-mutated.py",
        "MySGD",
        "sgd",
        {"weight_decay": 0.1},
        "input-mutated",
        id="torch",
        marks=[needs_torch, pytest.mark.slow],
    ),
]


@pytest.mark.parametrize(("style", "file", "name", "rule", "hyper", "expected"), BUGGY)
def test_buggy_target_fails(style: str, file: str, name: str, rule: str, hyper: dict, expected: str) -> None:
    report = run_audit(target(file, name), rule, hyper=hyper, **FAST)
    assert report.style == style
    assert report.verdict == "fail"
    f = finding(report, expected)
    assert f.severity == "error"
    assert f.step is not None and f.step >= 1
    assert f.example is not None and len(f.example["grads"]) == f.step


def test_buggy_example_is_shrunk() -> None:
    report = run_audit(target("dict_shape-changed.py", "update_parameters"), "sgd", **FAST)
    ex = finding(report, "shape-changed").example
    assert ex is not None
    sizes = [np.asarray(v).size for v in ex["parameters"].values()]
    # the smallest network that shows it: one layer of width 2 (a (1, 1) bias broadcasts to (1, 1))
    assert sum(sizes) <= 8, ex
    assert report.reproduction is not None and "update_parameters(" in report.reproduction


def test_states_are_mapped_to_the_rules_names() -> None:
    from optcheck.audit.engine import Auditor

    a = Auditor(target("config_correct.py", "adam"), "adam", examples=5, steps=2)
    report = a.run()
    assert report.verdict == "pass", report.render_text()
    assert a.state_map == {"m": "exp_avg", "v": "exp_avg_sq"}
    assert (
        "config",
        "None on the first call, then the config it returned; reads m as exp_avg, v as exp_avg_sq",
    ) in (report.binding)


# ---------------------------------------------------------------------------------------------
# The seed problem
# ---------------------------------------------------------------------------------------------

SEED_HYPER = {"alpha": 0.9, "lr": 0.01, "eps": 1e-8}
SEED_ARGS = {"reg_param": 0.7, "batch_size": 32}


@pytest.mark.slow
def test_seed_problem_names_both_bugs() -> None:
    report = run_audit(
        f"{EXAMPLES / 'rmsprop_nan.py'}:update_parameters_with_rmsprop",
        "rmsprop",
        hyper=SEED_HYPER,
        args=SEED_ARGS,
        **FAST,
    )
    assert report.verdict == "fail"
    ids = report.ids()
    assert "eps-outside-denominator" in ids and "non-square-term-in-second-moment" in ids, (
        report.render_text()
    )
    assert "differs-from-reference" not in ids
    nonfinite = finding(report, "non-finite")
    assert set(nonfinite.related) >= {"eps-outside-denominator"}
    assert "course-l2" in report.conventions
    assert any("0.021875" in n for n in report.notes)
    text = report.render_text()
    assert "fix:" in text and "Reproduce" in text


def test_seed_fixed_passes_under_course_l2() -> None:
    report = run_audit(
        f"{EXAMPLES / 'rmsprop_fixed.py'}:update_parameters_with_rmsprop",
        "rmsprop",
        hyper=SEED_HYPER,
        args=SEED_ARGS,
        **FAST,
    )
    assert report.verdict == "pass", report.render_text()
    assert report.hyper["weight_decay"] == pytest.approx(0.7 / 32)


def test_same_seed_same_report() -> None:
    runs = [
        run_audit(target("dict_raised-exception.py", "update_parameters"), "sgd", seed=3, **FAST)
        for _ in range(2)
    ]
    a, b = (json.loads(r.to_json()) for r in runs)
    for d in (a, b):
        d.pop("elapsed_s")
    assert a == b


# ---------------------------------------------------------------------------------------------
# Hostile targets: each becomes a finding, the audit still reports, the user's files are untouched
# ---------------------------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


HOSTILE = [
    pytest.param("dict_raised-exception.py", "update_parameters", "raised-exception", {}, id="raises"),
    pytest.param("dict_timeout.py", "update_parameters", "timeout", {"timeout": 1.0}, id="hangs"),
    pytest.param("dict_crashed.py", "update_parameters", "crashed", {}, id="sigsegv"),
    pytest.param("config_crashed.py", "sgd", "crashed", {}, id="null-pointer"),
    pytest.param("dict_exited.py", "update_parameters", "exited", {}, id="sys-exit"),
    pytest.param("functional_exited.py", "step", "exited", {}, id="os-exit"),
]


@pytest.mark.parametrize(("file", "name", "expected", "extra"), HOSTILE)
def test_hostile_target_becomes_a_finding(file: str, name: str, expected: str, extra: dict) -> None:
    before = _digest(TARGETS)
    t0 = time.monotonic()
    report = run_audit(target(file, name), "sgd", **{**FAST, **extra})
    elapsed = time.monotonic() - t0
    assert report.verdict == "fail"
    f = finding(report, expected)
    assert f.severity == "error"
    assert f.step is not None and f.example is not None
    assert len(f.example["grads"]) == f.step
    assert _digest(TARGETS) == before  # no file written (not even __pycache__)
    if expected == "timeout":
        assert "1 s" in f.message
        assert elapsed < 20


def test_raised_exception_shows_the_users_traceback_and_shrinks_to_step_two() -> None:
    report = run_audit(target("dict_raised-exception.py", "update_parameters"), "sgd", **FAST)
    f = finding(report, "raised-exception")
    assert f.step == 2
    assert "ValueError" in f.message and "past step 1" in f.message
    assert (
        f.detail is not None and "dict_raised-exception.py" in f.detail and "optcheck/audit" not in f.detail
    )
    sizes = [np.asarray(v).size for v in f.example["parameters"].values()]
    assert sum(sizes) == 2  # W1 (1, 1) and b1 (1, 1)


def test_huge_output_is_counted_not_shown() -> None:
    report = run_audit(target("dict_printed-output.py", "update_parameters"), "sgd", examples=5, steps=2)
    assert report.verdict == "pass"
    f = finding(report, "printed-output")
    assert f.severity == "info"
    assert len(report.render_text()) < 20_000


# ---------------------------------------------------------------------------------------------
# Conventions pass with an info finding; in-process targets
# ---------------------------------------------------------------------------------------------


def test_course_momentum_is_a_convention() -> None:
    report = run_audit(
        target("dict_correct-momentum-ema.py", "update_parameters_with_momentum"),
        "sgd",
        hyper={"momentum": 0.9},
        **FAST,
    )
    assert report.verdict == "pass", report.render_text()
    assert "momentum-ema" in report.conventions
    assert finding(report, "momentum-ema").severity == "info"


def test_cs231n_velocity_momentum_passes() -> None:
    report = run_audit(
        target("config_correct-momentum-velocity.py", "sgd_momentum"),
        "sgd",
        hyper={"momentum": 0.9, "lr": 0.01},
        **FAST,
    )
    assert report.verdict == "pass", report.render_text()
    assert report.style == "config"


def adam_eps_inside(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    if state is None:
        state = (0, np.zeros_like(param), np.zeros_like(param))
    t, m, v = state
    t += 1
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    return param - lr * (m / (1 - beta1**t)) / np.sqrt(v / (1 - beta2**t) + eps), (t, m, v)


def test_eps_inside_sqrt_is_a_convention_in_process() -> None:
    report = run_audit(adam_eps_inside, "adam", isolate=False, **FAST)
    assert not report.isolated
    assert report.verdict == "pass", report.render_text()
    assert "eps-inside-sqrt" in report.conventions


def momentum_state_lost(parameters, grads, v, beta=0.9, learning_rate=0.01):  # type: ignore[no-untyped-def]
    for k in parameters:
        vk = v["d" + k]
        vk = beta * vk + grads["d" + k]  # rebinds the local name: v never changes
        parameters[k] = parameters[k] - learning_rate * vk
    return parameters, v


@pytest.mark.slow
def test_state_not_updated() -> None:
    report = run_audit(momentum_state_lost, "sgd", hyper={"momentum": 0.9}, isolate=False, **FAST)
    assert report.verdict == "fail"
    f = finding(report, "state-not-updated")
    assert f.where == "v" and f.step == 1


def test_in_process_target_defined_in_a_function() -> None:
    def sgd(w, dw, config=None):  # type: ignore[no-untyped-def]
        config = config or {"learning_rate": 1e-2}
        return w - config["learning_rate"] * dw, config

    report = run_audit(sgd, "sgd", hyper={"lr": 0.01}, **FAST)
    assert not report.isolated
    assert report.verdict == "pass", report.render_text()


def test_rule_auto_identifies_the_rule() -> None:
    report = run_audit(target("dict_correct.py", "update_parameters_with_adam"), "auto", examples=5, steps=3)
    assert report.rule == "adam"
    assert report.verdict == "pass", report.render_text()
    assert "rule-identified" in report.ids()
    assert report.hyper["lr"] == 0.01


def test_progress_is_reported_once_the_audit_is_slow() -> None:
    from optcheck.audit.engine import Auditor

    seen: list[str] = []
    a = Auditor(
        target("dict_correct.py", "update_parameters_with_adam"), "adam", progress=seen.append, **FAST
    )
    a.t0 -= 10.0  # as if it had been running for ten seconds
    a.run()
    assert seen and "cases run" in seen[-1]
