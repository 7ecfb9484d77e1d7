"""Every calling style people write, audited with no glue: ``tests/targets/<style>_<id>.py``.

Each target here was written fresh in one style (course dicts with layers from 0 and unused
states, cs231n, functional over dicts, school-style hyperparameters first, functions returning
the step, lists and tuples, objects with ``update``/``update_params``/``apply_grad``/per-layer
and per-name methods, gradient functions, loop drivers, jax-style triples, ``Class.method``)
and says what the audit must find:

* ``FINDS``: the catalog ids the audit must name as errors (empty: it must pass);
* ``FLAGS``: what its own signature cannot tell: ``{"arg": {...}}`` for values without a
  default, ``{"name": "Class.method"}`` where the file has several candidates.

The audit runs with ``--rule auto`` (the default) and no ``--hyper``: binding, the
hyperparameters and the rule all come from the target itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from optcheck.audit import AuditUsageError, run_audit

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tests" / "targets"
FAST: dict[str, Any] = {"examples": 8, "steps": 3}


def _declared(path: Path) -> dict[str, Any] | None:
    """``FINDS`` and ``FLAGS`` of a target file, read without running it (``None``: not a style target)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for t in targets:
            if isinstance(t, ast.Name) and t.id in ("FINDS", "FLAGS"):
                out[t.id] = ast.literal_eval(value)
    return out if "FINDS" in out else None


STYLE_TARGETS = [p for p in sorted(TARGETS.glob("*.py")) if _declared(p) is not None]


def _audit(path: Path, **kwargs: Any) -> Any:
    decl = _declared(path)
    assert decl is not None
    flags = decl.get("FLAGS", {})
    text = str(path) + (f":{flags['name']}" if "name" in flags else "")
    return run_audit(text, "auto", args=flags.get("arg"), **{**FAST, **kwargs})


def test_every_style_has_a_correct_and_a_buggy_target() -> None:
    styles: dict[str, set[bool]] = {}
    for path in STYLE_TARGETS:
        style, _, rest = path.stem.partition("_")
        styles.setdefault(style, set()).add(rest.startswith("correct"))
    assert len(styles) >= 15, sorted(styles)
    lacking = {s: v for s, v in styles.items() if v != {True, False}}
    assert not lacking, f"styles without both a correct and a buggy target: {lacking}"


@pytest.mark.parametrize("path", STYLE_TARGETS, ids=[p.stem for p in STYLE_TARGETS])
def test_style_target_audited_without_glue(path: Path) -> None:
    decl = _declared(path)
    assert decl is not None
    report = _audit(path)
    errors = {f.id for f in report.findings if f.severity == "error"}
    expect = set(decl["FINDS"])
    if expect:
        assert report.verdict == "fail", report.render_text()
        assert expect <= errors, f"expected {sorted(expect)}, found {sorted(errors)}\n{report.render_text()}"
        assert "differs-from-reference" not in errors, report.render_text()
        # the runnable reproduction runs for every style
        assert report.reproduction, report.render_text()
        proc = subprocess.run(
            [sys.executable, "-c", report.reproduction], capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert proc.returncode == 0, report.reproduction + "\n" + proc.stderr[-2000:]
        assert "target:" in proc.stdout and "reference:" in proc.stdout, proc.stdout
    else:
        assert report.verdict == "pass", report.render_text()


def test_unbindable_target_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "odd.py"
    f.write_text("def update(a, b, c):\n    return a\n")
    with pytest.raises(AuditUsageError) as e:
        run_audit(f"{f}:update", "sgd", **FAST)
    msg = str(e.value)
    assert "\n" not in msg and "--bind" in msg


def test_file_with_several_candidates_lists_them(tmp_path: Path) -> None:
    f = tmp_path / "two.py"
    f.write_text(
        "def sgd(params, grads, lr=0.1):\n    return {k: params[k] - lr * grads[k] for k in params}\n\n"
        "def momentum(params, grads, v, lr=0.1):\n    return params\n"
    )
    with pytest.raises(AuditUsageError) as e:
        run_audit(str(f), "sgd", **FAST)
    assert "sgd" in str(e.value) and "momentum" in str(e.value) and f"{f}:sgd" in str(e.value)


# ---------------------------------------------------------------------------------------------
# The guard and the audit read an update function's arguments the same way
# ---------------------------------------------------------------------------------------------

#: Real-world signatures: (signature, params, grads, states, step).
SIGNATURES = [
    ("parameters, gradients, V, S, batch_size, t, learning_rate, reg_param", "parameters", "gradients", {"V", "S"}, "t"),
    ("parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8", "parameters", "grads", {"v", "s"}, "t"),
    ("params, grads, m, s, t, lr=0.01", "params", "grads", {"m", "s"}, "t"),
    ("alpha, beta1, beta2, epsilon, var, grad, v, s, t", "var", "grad", {"v", "s"}, "t"),
    ("alpha, beta2, epsilon, var, grad, s", "var", "grad", {"s"}, None),
    ("weights, dweights, ms, vs, step, learning_rate=1e-3", "weights", "dweights", {"ms", "vs"}, "step"),
    ("params, grads, bufs, lr=0.05, momentum=0.9", "params", "grads", {"bufs"}, None),
    ("x, grad_fn, cache, lr=1e-2, rho=0.99", "x", "grad_fn", {"cache"}, None),
    ("parameters, grads, S, learning_rate=0.01, beta=0.9, epsilon=1e-8, reg_param=0.7, batch_size=32", "parameters", "grads", {"S"}, None),
    ("w, dw, v_dw, s_dw, iteration, lr=0.001", "w", "dw", {"v_dw", "s_dw"}, "iteration"),
    ("theta, dtheta, velocity, mu=0.9, lr=0.01", "theta", "dtheta", {"velocity"}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("sig", "params", "grads", "states", "step"), SIGNATURES, ids=[s[0][:40] for s in SIGNATURES]
)
def test_guard_and_audit_bind_the_same_names(
    sig: str, params: str, grads: str, states: set[str], step: str | None
) -> None:
    import numpy as np

    from optcheck import rules
    from optcheck.audit import adapters
    from optcheck.audit._common import ParamInfo, TargetInfo
    from optcheck.guard._call import _classify

    parts = [p.strip() for p in sig.split(",")]
    infos = []
    for part in parts:
        name, _, default = part.partition("=")
        infos.append(
            ParamInfo(name, "POSITIONAL_OR_KEYWORD", bool(default), float(default) if default else None)
        )
    info = TargetInfo("", "update", "function", tuple(infos))
    binding = adapters.bind(
        info,
        "dict",
        rules.rule_class("adam"),
        {},
        {
            i.name: 1.0
            for i in infos
            if not i.has_default
            and i.name
            in ("alpha", "beta1", "beta2", "epsilon", "beta2", "batch_size", "learning_rate", "reg_param")
        },
    )
    roles = {c.name: c.role for c in binding.plan.calls}
    assert roles.get(params) == "params" and roles.get(grads) in ("grads", "grad_fn"), roles
    assert {n for n, r in roles.items() if r == "state"} == states, roles
    assert (step is None and "step" not in roles.values()) or roles.get(step) == "step", roles
    # the guard, handed the values a training loop passes
    tree = {"W1": np.ones((2, 2)), "b1": np.ones((2, 1))}
    values = {}
    for i in infos:
        n = i.name
        values[n] = tree if n in (params, grads) or n in states else 3 if n == step else 0.5
    call = _classify(values)
    assert (call.params, call.grads) == (params, grads)
    assert set(call.states) == states
    assert call.step == step


# ---------------------------------------------------------------------------------------------
# The classic course RMSprop of the issue
# ---------------------------------------------------------------------------------------------

COURSE_BUGGY = TARGETS / "course_non-square-term-in-second-moment.py"


def _load(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_t_{path.stem.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_guard_stops_the_course_rmsprop_at_its_first_bad_step() -> None:
    import numpy as np

    import optcheck

    update = optcheck.guarded(_load(COURSE_BUGGY).update_parameters, rule="rmsprop", alpha=0.999)
    rng = np.random.default_rng(0)
    params = {"W0": rng.normal(size=(3, 2)), "b0": np.zeros((3, 1))}
    V = {"dW0": np.zeros((3, 2)), "db0": np.zeros((3, 1))}
    S = {"dW0": np.zeros((3, 2)), "db0": np.zeros((3, 1))}
    grads = {"dW0": rng.normal(size=(3, 2)) * 0.1, "db0": rng.normal(size=(3, 1))}
    with pytest.raises(optcheck.InvariantError) as e:
        update(params, grads, V, S, 32, 1, 0.01, 0.5)
    assert "S['dW0']" in str(e.value) and "step 1" in str(e.value)


def test_two_consistent_spellings_of_the_l2_coefficient_are_accepted() -> None:
    text = f"{TARGETS / 'course_correct.py'}:update_parameters"
    report = run_audit(
        text, "rmsprop", hyper={"weight_decay": 0.015625}, args={"reg_param": 0.5, "batch_size": 32}, **FAST
    )
    assert report.verdict == "pass", report.render_text()
    assert any(
        "assumed beta2 = 0.999" in n and "hard-coded in update_parameters" in n for n in report.notes
    ), report.notes
    with pytest.raises(AuditUsageError, match="disagree"):
        run_audit(
            text, "rmsprop", hyper={"weight_decay": 0.1}, args={"reg_param": 0.5, "batch_size": 32}, **FAST
        )
