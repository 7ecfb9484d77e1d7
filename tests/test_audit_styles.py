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
