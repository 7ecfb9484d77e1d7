"""The two forms of a step: ``rule.step`` (pure) and ``rule.step_`` (in place).

* the pure form never mutates its inputs (params, grads, state: every leaf, every number)
  and returns arrays that share no memory with them;
* the in-place form gives bit-identical results to the pure one, for every case of
  ``CASES`` (every rule, every option), over several steps, in float32 and float64, on
  numpy arrays small and large (large ones are stepped block by block, with a ragged last
  block), dict trees, torch tensors and ``array_api_strict`` arrays;
* mutants built with ``rule.with_ops(...)`` (diagnosis) and wrapper rules work in both forms;
* memory: ``tracemalloc`` (numpy reports its allocations to it) sees at most 2
  parameter-sized temporaries beyond the outputs in the pure form, and at most 1 in the
  in-place form, for every rule;
* ``step_`` refuses what it cannot write: a read-only array, a state that is not a dict,
  two entries that share memory.
"""

from __future__ import annotations

import copy
import gc
import re
import tracemalloc
from typing import Any

import numpy as np
import pytest
from test_rules import BACKENDS, CASE_IDS, CASES, assert_trees_equal, to_backend, to_numpy

import optcheck
from optcheck import rules
from optcheck._core.errors import UsageError
from optcheck._core.tree import flatten
from optcheck.diagnose import _mutants
from optcheck.rules import Rule
from optcheck.rules._base import CHUNK_BYTES

STEPS = 4
# a 1-d array just over three blocks, so that the last block is short (float32 and float64)
BIG = 3 * (CHUNK_BYTES // 4) + 1000


def _grads(
    rng: np.random.Generator, shapes: dict[str, tuple[int, ...]], dtype: Any, k: int
) -> dict[str, Any]:
    """Gradients that exercise the branches: zeros at some steps, sign flips, exact zeros inside."""
    out = {}
    for key, shape in shapes.items():
        g = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 1)
        if k == 2:
            g = np.zeros(shape)
        elif k == 3:
            g = np.where(rng.random(shape) < 0.3, 0.0, -g)
        out[key] = np.asarray(g, dtype=dtype)
    return out


def _case(
    shapes: dict[str, tuple[int, ...]], dtype: Any, seed: int = 0
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    return params, [_grads(rng, shapes, dtype, k) for k in range(STEPS)]


def _snapshot(tree: Any) -> Any:
    return copy.deepcopy(tree)


def _assert_same_state(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    assert set(a) == set(b), what
    for key in a:
        if isinstance(a[key], (int, float)) or a[key] is None:
            assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), f"{what} state[{key!r}]"
        else:
            assert_trees_equal(to_numpy(a[key]), to_numpy(b[key]), what=f"{what} state[{key!r}]")


SHAPE_SETS = {
    "small tree": {"W": (3, 2), "b": (3,), "s": (), "e": (0,)},
    "large array": {"x": (BIG,)},
    "large tree": {"W": (BIG // 100, 100), "b": (BIG,), "c": (7,)},
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shapes", list(SHAPE_SETS), ids=list(SHAPE_SETS))
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
def test_step_in_place_is_bit_identical_to_step(
    name: str, opts: dict[str, Any], shapes: str, dtype: Any
) -> None:
    if shapes != "small tree" and dtype is np.float64 and opts:
        pytest.skip("large arrays: every option in float32, the defaults in float64 (time)")
    rule = rules.get(name, **opts)
    params, grads = _case(SHAPE_SETS[shapes], dtype)
    p_pure, s_pure = params, rule.init(params)
    p_in, s_in = _snapshot(params), rule.init(params)
    for k, g in enumerate(grads, 1):
        p_pure, s_pure = rule.step(p_pure, g, s_pure)
        arrays_before = [x for _, x in flatten(p_in)]
        out_p, out_s = rule.step_(p_in, g, s_in)
        assert out_p is p_in and out_s is s_in, "step_ returns the objects it was given"
        assert all(a is b for a, b in zip(arrays_before, [x for _, x in flatten(p_in)], strict=True))
        assert_trees_equal(p_pure, p_in, what=f"step {k} params")
        _assert_same_state(s_pure, s_in, f"step {k}")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
def test_step_in_place_on_other_array_libraries(
    name: str, opts: dict[str, Any], dtype: Any, backend: str
) -> None:
    """torch tensors and array_api_strict arrays: step_ writes into them, bit-identical to step."""
    rule = rules.get(name, **opts)
    params, grads = _case(SHAPE_SETS["small tree"], dtype)
    p_pure, s_pure = to_backend(params, backend), to_backend(rule.init(params), backend)
    p_in, s_in = to_backend(params, backend), to_backend(rule.init(params), backend)
    leaves_in = [x for _, x in flatten(p_in)]
    for k, g in enumerate(grads, 1):
        gb = to_backend(g, backend)
        p_pure, s_pure = rule.step(p_pure, gb, s_pure)
        rule.step_(p_in, gb, s_in)
        assert all(a is b for a, b in zip(leaves_in, [x for _, x in flatten(p_in)], strict=True))
        assert_trees_equal(to_numpy(p_pure), to_numpy(p_in), what=f"step {k} params")
        _assert_same_state(s_pure, s_in, f"step {k}")


@pytest.mark.parametrize("shapes", ["small tree", "large tree"])
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
def test_pure_step_never_mutates_its_inputs(name: str, opts: dict[str, Any], shapes: str) -> None:
    rule = rules.get(name, **opts)
    params, grads = _case(SHAPE_SETS[shapes], np.float32, seed=1)
    state = rule.init(params)
    for g in grads:
        before = _snapshot((params, g, state))
        ids = [id(x) for _, x in flatten(state)]
        new_p, new_s = rule.step(params, g, state)
        assert_trees_equal(before[0], params, what="params")
        assert_trees_equal(before[1], g, what="grads")
        _assert_same_state(before[2], state, "input")
        assert ids == [id(x) for _, x in flatten(state)], "the state dict was rebound"
        inputs = [x for t in (params, g, state) for _, x in flatten(t) if isinstance(x, np.ndarray)]
        outputs = [x for t in (new_p, *(new_s[k] for k in rule.array_keys())) for _, x in flatten(t)]
        for out in outputs:
            if out is None or out.size == 0:
                continue
            assert not any(np.shares_memory(out, x) for x in inputs), "an output aliases an input"
        params, state = new_p, new_s


def _temporaries(rule: Rule, n: int, in_place: bool) -> float:
    """Parameter-sized temporaries held at the peak of one step, beyond what the step returns."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(n)
    state = rule.init(p)
    for _ in range(2):  # past the first step (sgd's first momentum buffer is a copy of g)
        p, state = rule.step(p, rng.standard_normal(n), state)
    g = rng.standard_normal(n)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        if in_place:
            rule.step_(p, g, state)
            outputs = 0
        else:
            new_p, new_s = rule.step(p, g, state)
            trees = (new_p, *(new_s[k] for k in rule.array_keys()))
            outputs = sum(x.nbytes for t in trees for _, x in flatten(t) if isinstance(x, np.ndarray))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base - outputs) / p.nbytes


MEMORY_CASES = [(n, o) for n, o in CASES if n != "adafactor" or not o] + [
    ("adafactor", {"weight_decay": 0.1, "maximize": True})
]


@pytest.mark.parametrize(("name", "opts"), MEMORY_CASES, ids=[f"{n}-{o}" for n, o in MEMORY_CASES])
def test_temporaries_per_step(name: str, opts: dict[str, Any]) -> None:
    """At most 2 parameter-sized temporaries (pure) and 1 (in place), measured by tracemalloc."""
    rule = rules.get(name, **opts)
    n = 1 << 18  # 2 MiB of float64: 16 blocks
    pure = _temporaries(rule, n, in_place=False)
    in_place = _temporaries(rule, n, in_place=True)
    print(f"{name} {opts}: pure {pure:.2f}, in place {in_place:.2f} parameter-sized temporaries")
    assert pure <= 2.0, f"{name}: the pure step holds {pure:.2f} parameter-sized temporaries"
    assert in_place <= 1.0, f"{name}: the in-place step holds {in_place:.2f} parameter-sized temporaries"


def test_adafactor_matrix_temporaries() -> None:
    """Adafactor's factored second moment (a matrix) stays within the same bounds."""
    rule = rules.get("adafactor")
    rng = np.random.default_rng(0)
    p = rng.standard_normal((512, 512))
    state = rule.init(p)
    p, state = rule.step(p, rng.standard_normal(p.shape), state)
    g = rng.standard_normal(p.shape)
    for in_place in (False, True):
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        new_p, new_s = rule.step_(p.copy(), g, copy.deepcopy(state)) if in_place else rule.step(p, g, state)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # the in-place call is given a copy of p and of the state, which tracemalloc also counts
        given = p.nbytes if in_place else 0
        trees = (new_p, *(new_s[k] for k in rule.array_keys()))
        outputs = sum(x.nbytes for t in trees for _, x in flatten(t) if isinstance(x, np.ndarray))
        outputs = 0 if in_place else outputs
        temps = (peak - base - outputs - given) / p.nbytes
        assert temps <= (1.0 if in_place else 2.0) + 0.05, (in_place, temps)


# ---------------------------------------------------------------------------------------------
# Mutants and wrapper rules in both forms
# ---------------------------------------------------------------------------------------------

OPS_MIXINS = [
    getattr(_mutants, n)
    for n in _mutants.__all__
    if isinstance(getattr(_mutants, n), type) and issubclass(getattr(_mutants, n), rules.Ops)
]


@pytest.mark.parametrize("mixin", OPS_MIXINS, ids=[m.__name__ for m in OPS_MIXINS])
@pytest.mark.parametrize("name", rules.names())
def test_mutant_ops_work_in_both_forms(name: str, mixin: type[rules.Ops]) -> None:
    opts = (
        {"weight_decay": 0.1}
        if "weight_decay" in {s.name for s in rules.rule_class(name).hyper_specs()}
        else {}
    )
    if name == "sgd":
        opts["momentum"] = 0.9
    rule = rules.get(name, **opts).with_ops(_mutants.make_ops((mixin,), {}, rules.DEFAULT_OPS))
    params, grads = _case({"W": (BIG // 50, 50), "b": (5,)}, np.float32, seed=4)
    p_pure, s_pure = params, rule.init(params)
    p_in, s_in = _snapshot(params), rule.init(params)
    for k, g in enumerate(grads, 1):
        before = _snapshot((p_pure, g, s_pure))
        try:
            p_pure, s_pure_new = rule.step(p_pure, g, s_pure)
        except ArithmeticError as e:  # a bias correction of 0 (t - 1 = 0): the same error in place
            with pytest.raises(type(e)):
                rule.step_(p_in, g, s_in)
            assert_trees_equal(before[0], p_in, what="nothing written before the error")
            return
        _assert_same_state(before[2], s_pure, "mutant input")
        s_pure = s_pure_new
        rule.step_(p_in, g, s_in)
        assert_trees_equal(p_pure, p_in, what=f"{mixin.__name__} step {k} params")
        _assert_same_state(s_pure, s_in, f"{mixin.__name__} step {k}")


def test_a_hook_that_returns_its_argument_stays_safe_in_both_forms() -> None:
    """An Ops that breaks the contract (returns an input, another dtype) still gives equal results."""

    class Lazy(rules.Ops):
        def l2(self, g: Any, p: Any, wd: float) -> Any:
            return g  # the argument itself, even with wd != 0

        def descend(self, p: Any, update: Any, lr: float) -> Any:
            return (p - lr * update).astype(np.float64)  # another dtype

    rule = rules.get("sgd", weight_decay=0.1).with_ops(Lazy())
    for shape in [(4,), (BIG,)]:
        p = np.linspace(-1, 1, shape[0]).astype(np.float32)
        g = np.ones(shape, np.float32)
        p_pure, _ = rule.step(p, g, rule.init(p))
        assert p_pure.dtype == np.float64  # the pure form returns what the hooks computed
        p_in = p.copy()
        rule.step_(p_in, g, rule.init(p))
        np.testing.assert_array_equal(p_in, p_pure.astype(np.float32))


def test_wrapper_rules_work_in_both_forms() -> None:
    """A rule that overrides ``step`` (diagnosis's StatefulMutant) gets ``step_`` for free."""
    inner = rules.get("adam", lr=0.01)
    frozen = _mutants.StatefulMutant(inner=inner, freeze=("exp_avg_sq",))
    compound = _mutants.StatefulMutant(inner=inner, compound=(("exp_avg", "beta1"),))
    for rule in (frozen, compound):
        params, grads = _case({"W": (BIG,), "b": (3,)}, np.float64, seed=5)
        p_pure, s_pure = params, rule.init(params)
        p_in, s_in = _snapshot(params), rule.init(params)
        for g in grads:
            p_pure, s_pure = rule.step(p_pure, g, s_pure)
            rule.step_(p_in, g, s_in)
            assert_trees_equal(p_pure, p_in)
            _assert_same_state(s_pure, s_in, "wrapper")


# ---------------------------------------------------------------------------------------------
# What step_ refuses
# ---------------------------------------------------------------------------------------------


def test_step_in_place_refuses_read_only_and_shared_arrays_and_frozen_state() -> None:
    rule = rules.get("adam")
    p = {"W": np.ones((2, 2)), "b": np.ones(2)}
    g = {"W": np.ones((2, 2)), "b": np.ones(2)}
    state = rule.init(p)
    ro = {"W": p["W"].copy(), "b": p["b"].copy()}
    ro["b"].flags.writeable = False
    with pytest.raises(UsageError, match=re.escape("params['b'] is a read-only numpy array")):
        rule.step_(ro, g, rule.init(ro))
    shared = rule.init(p)
    shared["exp_avg_sq"]["W"] = shared["exp_avg"]["W"]
    with pytest.raises(
        UsageError, match=re.escape("state['exp_avg']['W'] and state['exp_avg_sq']['W'] share memory")
    ):
        rule.step_(p, g, shared)
    buf = np.zeros(6)  # params as views of one flat buffer: fine, they do not overlap
    flat = {"W": buf[:4].reshape(2, 2), "b": buf[4:]}
    rule.step_(flat, g, rule.init(flat))
    assert np.all(buf != 0)
    overlap = {"W": buf[:4].reshape(2, 2), "b": buf[3:5]}
    with pytest.raises(UsageError, match=re.escape("params['W'] and params['b'] share memory")):
        rule.step_(overlap, g, rule.init(overlap))
    with pytest.raises(UsageError, match=re.escape("params['b'] is a numpy scalar (float64)")):
        rule.step_({"b": np.float64(1.0)}, {"b": np.float64(1.0)}, rule.init({"b": np.float64(1.0)}))
    from types import MappingProxyType

    with pytest.raises(TypeError, match=re.escape("adam: rule.step_ writes the new state into state")):
        rule.step_(p, g, MappingProxyType(state))  # type: ignore[arg-type]
    # nothing was written by the refused calls
    assert np.all(p["W"] == 1) and state["step"] == 0 and np.all(state["exp_avg"]["W"] == 0)


def test_step_in_place_validates_like_step() -> None:
    rule = rules.get("rmsprop")
    p = np.ones(3)
    with pytest.raises(ValueError, match=re.escape("grads has shape (2,) but params has shape (3,)")):
        rule.step_(p, np.ones(2), rule.init(p))
    assert np.all(p == 1)


def test_step_in_place_reads_grads_only() -> None:
    rule = optcheck.rules.get("lion", lr=0.1)
    p, g = np.ones(BIG, np.float32), np.full(BIG, 0.5, np.float32)
    g0 = g.copy()
    state = rule.init(p)
    rule.step_(p, g, state)
    np.testing.assert_array_equal(g, g0)
    assert state["step"] == 1
    np.testing.assert_array_equal(p, np.full(BIG, 0.9, np.float32))


def test_pure_outputs_are_ordinary_arrays_and_numpys_huge_page_setting_is_kept() -> None:
    """The pure step allocates its large outputs without huge-page advice, then restores numpy's setting."""
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None)
    get = getattr(multiarray, "_get_madvise_hugepage", None)
    before = get() if get is not None else None
    rule = rules.get("adam")
    p = np.ones(1 << 21, np.float32)  # 8 MiB: above numpy's 4 MiB huge-page threshold
    new_p, new_s = rule.step(p, np.ones_like(p), rule.init(p))
    for x in (new_p, new_s["exp_avg"], new_s["exp_avg_sq"]):
        assert type(x) is np.ndarray and x.flags.owndata and x.flags.writeable and x.flags.c_contiguous
    if get is not None:
        assert get() == before
