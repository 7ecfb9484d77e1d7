"""The audit names the right bug on hand-written targets: ``tests/targets/<style>_<id>.py``.

Every catalog id of :data:`optcheck.diagnose.CATALOG` has a buggy target in at least two
adapter styles (dict, config, functional, object, torch), and every convention of
:data:`optcheck.diagnose.CONVENTIONS` a correct one. ``<style>_<id>--<form>.py`` is another
form of the same bug or convention (a bug on the biases only, a counter frozen at step 3). Each target module says how to audit it:

* ``TARGET``: the function or class; ``RULE``, ``HYPER``, ``ARGS`` (and ``STEPS``): the audit's
  ``--rule``, ``--hyper``, ``--arg`` (and ``--steps``);
* ``EXPECT``: the catalog ids the audit must name as errors (empty: the target is correct);
  ``ABSENT``: ids it must not name; ``INFERRED``: the value(s) a hyperparameter fit must find;
* ``CONVENTION``: the convention the audit must name (``None``: none needs naming).

Each audit runs a Hypothesis search and shrinks what it finds (one to three seconds a target),
so this module is marked ``slow``; ``tests/test_diagnose.py`` covers the same ids on recorded
trajectories in a few seconds.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from optcheck.diagnose import CATALOG, CONVENTIONS
from optcheck.testing import audit

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "tests" / "targets"
STYLES = ("dict", "config", "functional", "object", "torch")
EXAMPLES = 10


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_target_{path.stem.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ours() -> list[Path]:
    """The targets written for diagnosis: those that say what the audit must find."""
    out = []
    for path in sorted(TARGETS.glob("*.py")):
        if re.search(r"^EXPECT\b", path.read_text(encoding="utf-8"), re.MULTILINE):
            out.append(path)
    return out


OURS = _ours()


def test_every_catalog_id_has_targets_in_two_styles_and_every_convention_one() -> None:
    styles: dict[str, set[str]] = {}
    for path in OURS:
        style, _, rest = path.stem.partition("_")
        rest = rest.split("--")[0]  # dict_<id>--<form>.py: another form of the same bug
        assert style in STYLES, f"{path.name}: the style prefix must be one of {STYLES}"
        styles.setdefault(rest, set()).add(style)
    missing = {i: sorted(styles.get(i, ())) for i in CATALOG if len(styles.get(i, ())) < 2}
    assert not missing, f"catalog ids without buggy targets in two styles: {missing}"
    no_target = [c for c in CONVENTIONS if c not in styles]
    assert not no_target, f"conventions without a correct target: {no_target}"


@pytest.mark.parametrize("path", OURS, ids=[p.stem for p in OURS])
def test_the_audit_names_the_bug_or_passes(path: Path) -> None:
    mod = _module(path)
    if "torch" in path.stem.split("_")[0]:
        pytest.importorskip("torch")
    report = audit(
        f"{path}:{mod.TARGET}",
        mod.RULE,
        hyper=mod.HYPER,
        args=mod.ARGS,
        examples=EXAMPLES,
        steps=getattr(mod, "STEPS", None),
        isolate=False,
    )
    errors = {f.id for f in report.findings if f.severity == "error"}
    expect = set(mod.EXPECT)
    if expect:
        assert report.verdict == "fail"
        assert expect <= errors, f"expected {sorted(expect)}, the audit found {sorted(errors)}"
        assert "differs-from-reference" not in errors
        for absent in getattr(mod, "ABSENT", ()):
            assert absent not in errors
        for f in report.findings:
            if f.id in expect:
                assert f.fix, f"{f.id}: no corrected equation in the finding"
        for name, value in getattr(mod, "INFERRED", {}).items():
            text = next(f.message for f in report.findings if f.id == "hyperparameter-mismatch")
            assert f"{name}={value:g}" in text, text
    else:
        conv = getattr(mod, "CONVENTION", None)
        catalog_errors = errors & set(CATALOG)
        assert not catalog_errors and "differs-from-reference" not in errors, report.render_text()
        if conv is not None:
            assert conv in report.conventions
            assert any(f.id == conv and f.severity == "info" for f in report.findings)
        if conv != "float32-compute":
            # float32 arithmetic overflows on the audit's largest float64 inputs: that is reported
            # (non-finite), and is not a bug of the formula.
            assert report.verdict == "pass", report.render_text()


def test_the_seed_function_has_both_bugs_named_by_the_audit() -> None:
    report = audit(
        f"{ROOT / 'examples' / 'rmsprop_nan.py'}:update_parameters_with_rmsprop",
        "rmsprop",
        args={"reg_param": 0.7, "batch_size": 32},
        examples=EXAMPLES,
        isolate=False,
        alpha=0.9,
        lr=0.01,
        eps=1e-8,
    )
    errors = {f.id for f in report.findings if f.severity == "error"}
    assert {"non-square-term-in-second-moment", "eps-outside-denominator"} <= errors
    assert "differs-from-reference" not in errors
    nan = next(f for f in report.findings if f.id == "non-finite")
    assert set(nan.related) & {"non-square-term-in-second-moment", "eps-outside-denominator"}


def test_the_fixed_seed_passes_the_audit() -> None:
    report = audit(
        f"{ROOT / 'examples' / 'rmsprop_fixed.py'}:update_parameters_with_rmsprop",
        "rmsprop",
        args={"reg_param": 0.7, "batch_size": 32},
        examples=EXAMPLES,
        isolate=False,
        alpha=0.9,
        lr=0.01,
        eps=1e-8,
    )
    assert report.verdict == "pass", report.render_text()


def test_cli_plot_draws_the_divergence(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "seed.png"
    cmd = [
        sys.executable, "-m", "optcheck", "audit",
        "examples/rmsprop_nan.py:update_parameters_with_rmsprop", "--rule", "rmsprop",
        "--hyper", "alpha=0.9", "--hyper", "lr=0.01", "--arg", "reg_param=0.7", "--arg", "batch_size=32",
        "--examples", str(EXAMPLES), "--plot", str(png),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    if "nothing to plot" in proc.stderr:
        pytest.xfail("the audit does not attach its failing trajectory to the report yet (cli._plot)")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Issue 13: no rule, no false blame; hidden state judged shadow-free
# ---------------------------------------------------------------------------------------------

MADGRAD = """
import numpy as np


def update_parameters_with_madgrad(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, epsilon=1e-6):
    lamb = learning_rate * np.sqrt(t)
    for key in list(parameters):
        k = "d" + key
        s[k] = s[k] + lamb * grads[k]  # signed: a dual average, not a second moment
        v[k] = v[k] + lamb * grads[k] ** 2
        z = -s[k] / (np.cbrt(v[k]) + epsilon)
        parameters[key] = beta1 * parameters[key] + (1 - beta1) * z
    return parameters, v, s
"""

YOGI = """
import numpy as np


class Yogi:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-3):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = {}
        self.exp_avg_sq = {}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.betas
        for k, p in params.items():
            g = grads[k]
            m = self.exp_avg[k] = b1 * self.exp_avg.get(k, np.zeros_like(p)) + (1 - b1) * g
            v = self.exp_avg_sq.get(k, np.zeros_like(p))
            v = self.exp_avg_sq[k] = v - (1 - b2) * np.sign(v - g * g) * g * g  # additive: may stay put
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
"""

HIDDEN_ADAM = """
import numpy as np


class Adam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self._m, self._v, self._t = {}, {}, 0

    def step(self, params, grads):
        self._t += 1
        b1, b2 = self.betas
        for k, p in params.items():
            g = grads[k]
            self._m[k] = b1 * self._m.get(k, 0.0) + (1 - b1) * g
            self._v[k] = b2 * self._v.get(k, 0.0) + (1 - b2) * g * g
            m_hat = self._m[k] / (1 - b1**self._t)
            v_hat = self._v[k] / (1 - b2**self._t)
            params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
"""


def test_a_signed_accumulator_is_not_judged_as_a_second_moment(tmp_path: Path) -> None:
    """MADGRAD's s is signed; audited against a rule whose name map calls s a second moment, the
    audit finds no rule that reproduces it and withdraws the role-based findings."""
    path = tmp_path / "madgrad.py"
    path.write_text(MADGRAD, encoding="utf-8")
    report = audit(f"{path}:update_parameters_with_madgrad", "adam", examples=EXAMPLES, isolate=False)
    errors = {f.id for f in report.findings if f.severity == "error"}
    assert "differs-from-reference" in errors
    assert not errors & {"negative-second-moment", "sqrt-of-negative", "accumulator-decreased"}, errors
    assert "update-without-gradient" not in errors  # "no momentum" would be a guess about its state
    assert any("not reported" in note for note in report.notes)


def test_an_additive_moment_left_unchanged_is_not_state_not_updated(tmp_path: Path) -> None:
    path = tmp_path / "yogi.py"
    path.write_text(YOGI, encoding="utf-8")
    report = audit(f"{path}:Yogi", "adam", examples=EXAMPLES, isolate=False)
    errors = {f.id for f in report.findings if f.severity == "error"}
    assert "state-not-updated" not in errors, report.render_text()


def test_hidden_moments_are_not_called_no_momentum(tmp_path: Path) -> None:
    """An object whose first moment is private: a zero gradient may move p; nothing says "no momentum"."""
    path = tmp_path / "hidden.py"
    path.write_text(HIDDEN_ADAM, encoding="utf-8")
    report = audit(f"{path}:Adam", "adam", examples=EXAMPLES, isolate=False)
    assert report.verdict == "pass", report.render_text()
    assert "update-without-gradient" not in {f.id for f in report.findings}


def test_rule_none_checks_only_what_holds_for_every_rule() -> None:
    correct_but_unknown = TARGETS / "object_radam-no-update-window.py"
    report = audit(f"{correct_but_unknown}:RAdam", "none", examples=EXAMPLES, isolate=False)
    assert report.verdict == "pass" and report.rule == "none"
    nan_target = TARGETS / "functional_bias-correction-wrong-step--t-zero.py"
    report = audit(f"{nan_target}:adam", "none", examples=EXAMPLES, isolate=False)
    ids = {f.id for f in report.findings if f.severity == "error"}
    assert ids == {"non-finite"}, ids  # no reference: no diagnosis, no differential, no bound
    assert all(f.fix is None for f in report.findings)
