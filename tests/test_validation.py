"""Every public function refuses bad input with a named error (issue 15).

One table of bad calls: each row calls a public entry point with one bad argument and says
which argument the message must name. The error must be a ``TypeError`` or ``ValueError``
raised by optcheck itself (``optcheck.UsageError``, ``hypothesis``'s ``InvalidArgument`` for the
strategies), never a ``KeyError``/``AttributeError``/numpy error, and the caller's arrays must be
unchanged afterwards. ``benchmarks/fuzz_api.py`` runs a larger, generated catalogue; the last
test here runs it and asserts that nothing comes back raw or wrong.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optcheck
from optcheck import invariants as inv
from optcheck import rules
from optcheck._core.errors import UsageError
from optcheck._trajectory import Trajectory
from optcheck.diagnose import explain, identify
from optcheck.gradcheck import check_gradient, check_vjp, step_sweep

try:  # torch is optional: the rows that mix it with numpy are skipped without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix

ADAM = rules.get("adam", lr=0.01)


def _params() -> dict[str, np.ndarray]:
    return {"W": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": np.array([0.1, -0.2, 0.3])}


def _grads() -> dict[str, np.ndarray]:
    return {"W": np.full((2, 3), 0.5), "b": np.array([1.0, -1.0, 0.25])}


P, G = _params(), _grads()
S0 = ADAM.init(P)
P1, S1 = ADAM.step(P, G, S0)
PRISTINE = copy.deepcopy((P, G, S0, P1, S1))


def leaf(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**tree, key: value}


def matrix(x: np.ndarray) -> Any:
    return np.asmatrix(x)


def masked(x: np.ndarray) -> Any:
    m = np.ma.masked_array(x.copy(), mask=np.zeros(x.shape, bool))
    m.mask.flat[0] = True
    return m


def objects(x: np.ndarray) -> np.ndarray:
    return x.astype(object)


def step(**kw: Any) -> Any:
    return ADAM.step(**{"params": P, "grads": G, "state": S0, **kw})


def update(**kw: Any) -> Any:
    args: dict[str, Any] = {
        "rule": ADAM,
        "params": P,
        "grads": G,
        "state": S0,
        "new_params": P1,
        "new_state": S1,
    }
    return inv.check_update(**{**args, **kw})


def gcheck(**kw: Any) -> Any:
    guard = optcheck.Guard("adam", lr=0.01)
    return guard.check(**{"params": P1, "grads": G, "state": S1, "before": {"params": P, "state": S0}, **kw})


def snap(**kw: Any) -> Any:
    return optcheck.Guard("adam", lr=0.01).snapshot(**{"params": P, "grads": G, "state": S0, **kw})


def sgd_update(params: Any, grads: Any) -> Any:
    return {k: params[k] - 0.1 * grads[k] for k in params}


def f(x: Any) -> float:
    return float(np.sum(x["W"] ** 2) + np.sum(np.sin(x["b"])))


def grad(x: Any) -> Any:
    return {"W": 2 * x["W"], "b": np.cos(x["b"])}


def gradient(**kw: Any) -> Any:
    return check_gradient(**{"f": f, "x": P, "grad": grad(P), **kw})


def trajectory(**kw: Any) -> Trajectory:
    p0 = _params()
    grads = [_grads(), _grads()]
    out, p, s = [], p0, ADAM.init(p0)
    for g in grads:
        p, s = ADAM.step(p, g, s)
        out.append({k: v * 1.01 for k, v in p.items()})
    return Trajectory(**{"rule": ADAM, "params0": p0, "grads": grads, "params": out, **kw})


def audit(**kw: Any) -> Any:
    args: dict[str, Any] = {"target": sgd_update, "rule": "sgd", "isolate": False, "examples": 1, "steps": 1}
    return optcheck.testing.audit(**{**args, **kw})


def _step_inplace(*, readonly: bool = False, alias: bool = False) -> Any:
    p = _params()
    state = ADAM.init(p)
    if readonly:
        p["W"].setflags(write=False)
    if alias:
        state["exp_avg"]["W"] = p["W"]
    return ADAM.step_(p, _grads(), state)


def _watch(**kw: Any) -> Any:
    param = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    return optcheck.watch(torch.optim.Adam([param], lr=0.01), **kw)


def _affine_forward(x: Any, w: Any, b: Any) -> Any:
    return x @ w + b, (x, w, b)


def _affine_backward(dout: Any, cache: Any) -> Any:
    x, w, _ = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def _layer(**kw: Any) -> Any:
    inputs = (np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0, 1, 12).reshape(3, 4), np.ones(4))
    return optcheck.check_layer(_affine_forward, _affine_backward, kw.pop("inputs", inputs), **kw)


def _torch_loss(x: Any) -> Any:
    return (x**2).sum()


def _torch_x() -> Any:
    return torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)


def _strategies() -> Any:
    return importlib.import_module("optcheck.strategies")


# (id, call, the argument the message must name)
CASES: list[tuple[str, Callable[[], Any], str]] = [
    # rules
    ("get name=3", lambda: rules.get(3), "rule name"),  # type: ignore[arg-type]
    ("get lr=nan", lambda: rules.get("adam", lr=float("nan")), "lr"),
    ("get lr=inf", lambda: rules.get("sgd", lr=float("inf")), "lr"),
    ("get lr='x'", lambda: rules.get("rmsprop", lr="x"), "lr"),
    ("get betas='ab'", lambda: rules.get("adam", betas="ab"), "betas"),
    ("Adam(beta1=None)", lambda: rules.Adam(beta1=None), "beta1"),  # type: ignore[arg-type]
    ("init params=None", lambda: ADAM.init(None), "params"),
    ("init np.matrix", lambda: ADAM.init(leaf(P, "W", matrix(P["W"]))), "params['W']"),
    ("init masked", lambda: ADAM.init(leaf(P, "W", masked(P["W"]))), "params['W']"),
    ("init object dtype", lambda: ADAM.init(leaf(P, "W", objects(P["W"]))), "params['W']"),
    ("init numpy+torch", lambda: ADAM.init(leaf(P, "b", torch.zeros(3, dtype=torch.float64))), "params"),
    ("init int key", lambda: ADAM.init({1: P["W"]}), "params"),
    ("step grads np.matrix", lambda: step(grads=leaf(G, "W", matrix(G["W"]))), "grads['W']"),
    ("step grads masked", lambda: step(grads=leaf(G, "W", masked(G["W"]))), "grads['W']"),
    ("step params np.matrix", lambda: step(params=leaf(P, "W", matrix(P["W"]))), "params['W']"),
    ("step grads transposed", lambda: step(grads=leaf(G, "W", G["W"].T.copy())), "grads['W']"),
    ("step grads missing key", lambda: step(grads={"W": G["W"]}), "grads"),
    ("step grads numpy+torch", lambda: step(grads=leaf(G, "W", torch.tensor(G["W"]))), "grads['W']"),
    ("step state=None", lambda: step(state=None), "state"),
    ("step state step=-1", lambda: step(state={**S0, "step": -1}), "step"),
    ("step state step='x'", lambda: step(state={**S0, "step": "x"}), "step"),
    (
        "step state entry transposed",
        lambda: step(state={**S0, "exp_avg": leaf(S0["exp_avg"], "W", np.zeros((3, 2)))}),
        "exp_avg",
    ),
    # invariant checkers
    ("non_finite x=None", lambda: inv.non_finite(None), "x"),
    ("non_finite object dtype", lambda: inv.non_finite(objects(np.array([1.0, np.nan]))), "x"),
    ("non_finite name=3", lambda: inv.non_finite(P, name=3), "name"),  # type: ignore[arg-type]
    ("non_finite step='3'", lambda: inv.non_finite(P, step="3"), "step"),  # type: ignore[arg-type]
    ("negative_second_moment masked", lambda: inv.negative_second_moment(masked(np.ones(3))), "v"),
    (
        "negative_second_moment grads shape",
        lambda: inv.negative_second_moment(-np.ones(3), grads=np.ones(2)),
        "grads",
    ),
    ("sqrt_of_negative np.matrix", lambda: inv.sqrt_of_negative(matrix(np.ones((2, 2)))), "x"),
    (
        "accumulator_decreased shapes",
        lambda: inv.accumulator_decreased(np.full(3, 5.0), np.ones((3, 1))),
        "after",
    ),
    ("accumulator_decreased sizes", lambda: inv.accumulator_decreased(np.full(3, 5.0), np.ones(2)), "after"),
    ("accumulator_decreased before=None", lambda: inv.accumulator_decreased(None, np.ones(2)), "before"),
    (
        "accumulator_decreased kind",
        lambda: inv.accumulator_decreased(np.ones(2), np.ones(2), kind="sum"),
        "kind",
    ),
    (
        "accumulator_decreased numpy+torch",
        lambda: inv.accumulator_decreased(np.ones(2), torch.ones(2)),
        "after",
    ),
    ("step_not_incremented '2'", lambda: inv.step_not_incremented(1, "2"), "after"),
    ("step_not_incremented None", lambda: inv.step_not_incremented(None, 2), "before"),
    (
        "update_without_gradient grads shape",
        lambda: inv.update_without_gradient(P, leaf(G, "W", np.zeros((3, 2))), P1),
        "grads",
    ),
    (
        "update_without_gradient new_params=None",
        lambda: inv.update_without_gradient(P, G, None),
        "new_params",
    ),
    (
        "update_without_gradient momentum keys",
        lambda: inv.update_without_gradient(P, G, P1, momentum={"W": P["W"]}),
        "momentum",
    ),
    ("update_too_large bound=nan", lambda: inv.update_too_large(P, P1, bound=float("nan")), "bound"),
    ("update_too_large decay=-1", lambda: inv.update_too_large(P, P1, bound=1.0, decay=-1.0), "decay"),
    (
        "update_too_large new_params keys",
        lambda: inv.update_too_large(P, {"W": P1["W"]}, bound=1.0),
        "new_params",
    ),
    ("input_mutated after=None", lambda: inv.input_mutated(G, None), "after"),
    ("shape_changed before string leaf", lambda: inv.shape_changed(leaf(P, "W", "x"), P), "before"),
    (
        "dtype_changed after object dtype",
        lambda: inv.dtype_changed(P, leaf(P, "W", objects(P["W"]))),
        "after",
    ),
    ("raise_if 3", lambda: inv.raise_if(3), "violations"),  # type: ignore[arg-type]
    ("raise_if strings", lambda: inv.raise_if(["x"]), "violations"),  # type: ignore[list-item]
    ("check_update rule='adam'", lambda: update(rule="adam"), "rule"),
    ("check_update grads shape", lambda: update(grads=leaf(G, "W", np.zeros((3, 2)))), "grads"),
    ("check_update grads numpy+torch", lambda: update(grads=leaf(G, "W", torch.tensor(G["W"]))), "grads"),
    ("check_update immutable='grads'", lambda: update(immutable="grads"), "immutable"),
    ("check_update immutable unknown", lambda: update(immutable=["gradz"]), "immutable"),
    ("check_update skip=3", lambda: update(skip=3), "skip"),
    ("check_update skip='non-finite'", lambda: update(skip="non-finite"), "skip"),
    ("check_update names=3", lambda: update(names=3), "names"),
    ("check_update roles='x'", lambda: update(roles="x"), "roles"),
    ("check_update roles unknown role", lambda: update(roles={"exp_avg": "bogus"}), "roles"),
    ("check_update key_prefix list", lambda: update(key_prefix=["d"]), "key_prefix"),
    ("check_update before=3", lambda: update(before=3), "before"),
    ("check_update before unknown key", lambda: update(before={"parameters": P}), "before"),
    ("check_update overrides value", lambda: update(overrides={("W",): 3}), "overrides"),
    ("check_update state=3", lambda: update(state=3), "state"),
    ("check_update state step=1.5", lambda: update(state={**S0, "step": 1.5}), "state['step']"),
    (
        "check_update new_state entry keys",
        lambda: update(new_state={**S1, "exp_avg": {"W": S1["exp_avg"]["W"]}}),
        "new_state['exp_avg']",
    ),
    (
        "check_update state object dtype",
        lambda: update(state={**S0, "exp_avg_sq": leaf(S0["exp_avg_sq"], "W", objects(np.ones((2, 3))))}),
        "state['exp_avg_sq']",
    ),
    # Guard
    ("Guard seed=-1", lambda: optcheck.Guard("adam", sample=2, seed=-1), "seed"),
    ("Guard seed=1.5", lambda: optcheck.Guard("adam", seed=1.5), "seed"),
    ("Guard seed='x'", lambda: optcheck.Guard("adam", seed="x"), "seed"),
    ("Guard names=3", lambda: optcheck.Guard("adam", names=3), "names"),
    ("Guard names value", lambda: optcheck.Guard("adam", names={"params": 3}), "names"),
    ("Guard roles='x'", lambda: optcheck.Guard("adam", roles="x"), "roles"),
    ("Guard skip=3", lambda: optcheck.Guard("adam", skip=3), "skip"),
    ("Guard overrides='x'", lambda: optcheck.Guard("adam", overrides="x"), "overrides"),
    (
        "Guard overrides lr=nan",
        lambda: optcheck.Guard("adam", overrides={"b": {"lr": float("nan")}}),
        "overrides",
    ),
    ("Guard every=0", lambda: optcheck.Guard("adam", every=0), "every"),
    ("Guard mode=3", lambda: optcheck.Guard("adam", mode=3), "mode"),
    ("Guard.check params=None", lambda: gcheck(params=None), "params"),
    ("Guard.check grads=None", lambda: gcheck(grads=None), "grads"),
    ("Guard.check step=-1", lambda: gcheck(step=-1), "step"),
    ("Guard.check grads np.matrix", lambda: gcheck(grads=leaf(G, "W", matrix(G["W"]))), "grads['W']"),
    ("Guard.check grads numpy+torch", lambda: gcheck(grads=leaf(G, "W", torch.tensor(G["W"]))), "grads"),
    (
        "Guard.check grads shape, no before",
        lambda: gcheck(grads=leaf(G, "b", np.ones(2)), before=None),
        "grads['b']",
    ),
    ("Guard.check grads shape", lambda: gcheck(grads=leaf(G, "b", np.ones(2))), "grads['b']"),
    ("Guard.check state step='x'", lambda: gcheck(state={**S1, "step": "x"}), "state['step']"),
    (
        "Guard.check state entry keys",
        lambda: gcheck(state={**S1, "exp_avg": {"W": S1["exp_avg"]["W"]}}),
        "state['exp_avg']",
    ),
    ("Guard.check before params=None", lambda: gcheck(before={"params": None}), "params"),
    ("Guard.check before state=3", lambda: gcheck(before={"params": P, "state": 3}), "before['state']"),
    ("Guard.snapshot params=None", lambda: snap(params=None), "params"),
    ("Guard.snapshot grads keys", lambda: snap(grads={"W": G["W"]}), "grads"),
    ("Guard.snapshot state step=-1", lambda: snap(state={**S0, "step": -1}), "state['step']"),
    ("guarded update_fn=None", lambda: optcheck.guarded(None, "sgd"), "update_fn"),
    ("guarded seed=-1", lambda: optcheck.guarded(sgd_update, "sgd", sample=2, seed=-1), "seed"),
    ("guarded roles=3", lambda: optcheck.guarded(sgd_update, "sgd", roles=3), "roles"),
    (
        "guarded call grads np.matrix",
        lambda: optcheck.guarded(sgd_update, "sgd", lr=0.1)(_params(), leaf(_grads(), "W", matrix(G["W"]))),
        "grads['W']",
    ),
    ("trap overflow='yes'", lambda: optcheck.trap(overflow="yes").__enter__(), "overflow"),
    # gradcheck
    ("check_gradient seed=-1", lambda: gradient(seed=-1), "seed"),
    ("check_gradient seed=1.5", lambda: gradient(seed=1.5), "seed"),
    ("check_gradient f=None", lambda: gradient(f=None), "f"),
    ("check_gradient x np.matrix", lambda: gradient(x=leaf(P, "W", matrix(P["W"]))), "x['W']"),
    ("check_gradient grad masked", lambda: gradient(grad=leaf(grad(P), "W", masked(P["W"]))), "grad['W']"),
    ("check_gradient grad keys", lambda: gradient(grad={"W": P["W"]}), "grad"),
    ("check_gradient method", lambda: gradient(method="forward"), "method"),
    ("check_gradient int key", lambda: gradient(x={1: P["W"]}), "x"),
    ("check_vjp f=3", lambda: check_vjp(3, P["W"], np.ones((2, 3)), np.ones((2, 3))), "f"),
    (
        "check_vjp seed=-1",
        lambda: check_vjp(np.tanh, P["W"], np.ones((2, 3)), np.ones((2, 3)), seed=-1),
        "seed",
    ),
    (
        "check_vjp upstream np.matrix",
        lambda: check_vjp(np.tanh, P["W"], matrix(np.ones((2, 3))), np.ones((2, 3))),
        "upstream",
    ),
    ("step_sweep seed='x'", lambda: step_sweep(f, P, grad, "W", (0, 0), seed="x"), "seed"),
    ("step_sweep key=3", lambda: step_sweep(f, P, grad, 3), "key"),
    ("step_sweep index=1.5", lambda: step_sweep(f, P, grad, "W", 1.5), "index"),
    ("step_sweep steps=[]", lambda: step_sweep(f, P, grad, "W", (0, 0), steps=[]), "steps"),
    # diagnose
    ("explain None", lambda: explain(None), "trajectories"),  # type: ignore[arg-type]
    ("explain one trajectory", lambda: explain(trajectory()), "trajectories"),  # type: ignore[arg-type]
    (
        "explain grads keys",
        lambda: explain([trajectory(grads=[{"W": G["W"]}] * 2)]),
        "trajectories[0].grads[0]",
    ),
    (
        "explain grads shapes",
        lambda: explain([trajectory(grads=[leaf(G, "W", np.ones((3, 2)))] * 2)]),
        "trajectories[0].grads[0]",
    ),
    (
        "explain params shapes",
        lambda: explain([trajectory(params=[leaf(P, "W", np.ones((3, 2)))] * 2)]),
        "trajectories[0].params[0]",
    ),
    ("explain rule string", lambda: explain([trajectory(rule="adam")]), "trajectories[0].rule"),
    ("explain grads not a list", lambda: explain([trajectory(grads=_grads())]), "trajectories[0].grads"),
    ("explain budget='x'", lambda: explain([trajectory()], budget="x"), "budget"),
    (
        "identify params keys",
        lambda: identify([trajectory(params=[{"W": P["W"]}] * 2)]),
        "trajectories[0].params[0]",
    ),
    ("identify state0 keys", lambda: identify([trajectory(state0={"step": 0})]), "trajectories[0].state0"),
    ("identify budget=nan", lambda: identify([trajectory()], budget=float("nan")), "budget"),
    # in-place rules
    ("step_ read-only params", lambda: _step_inplace(readonly=True), "params['W']"),
    ("step_ state aliasing params", lambda: _step_inplace(alias=True), "state['exp_avg']['W']"),
    (
        "step_ grads np.matrix",
        lambda: ADAM.step_(_params(), leaf(G, "W", matrix(G["W"])), ADAM.init(_params())),
        "grads['W']",
    ),
    # torch front ends and layer checks
    ("watch optimizer=3", lambda: optcheck.watch(3), "optimizer"),
    ("watch every=0", lambda: _watch(every=0), "every"),
    ("watch names=3", lambda: _watch(names=3), "names"),
    ("check_layer names='xwb'", lambda: _layer(names="xwb"), "names"),
    (
        "check_layer inputs np.matrix",
        lambda: _layer(inputs=(matrix(np.ones((2, 3))), np.ones((3, 4)), np.ones(4))),
        "inputs[0]",
    ),
    ("check_layer seed=-1", lambda: _layer(seed=-1), "seed"),
    ("check_torch eps=nan", lambda: optcheck.check_torch(_torch_loss, _torch_x(), eps=float("nan")), "eps"),
    ("check_torch names=3", lambda: optcheck.check_torch(_torch_loss, _torch_x(), names=3), "names"),
    # strategies (hypothesis's InvalidArgument, a TypeError)
    ("strategies.params layers=[2, -1]", lambda: _strategies().params(layers=[2, -1]), "layers"),
    (
        "strategies.grads_like np.matrix",
        lambda: _strategies().grads_like(leaf(P, "W", matrix(P["W"]))),
        "params['W']",
    ),
    ("strategies.elements bounds=3", lambda: _strategies().elements(bounds=3), "bounds"),
    ("strategies.states rule=3", lambda: _strategies().states(3, P), "rule"),
    # testing
    ("audit args=3", lambda: audit(args=3), "args"),
    ("audit hyper='x'", lambda: audit(hyper="x"), "hyper"),
    ("audit timeout='x'", lambda: audit(timeout="x"), "timeout"),
    ("audit isolate='yes'", lambda: audit(isolate="yes"), "isolate"),
    ("audit seed=-1", lambda: audit(seed=-1), "seed"),
    ("audit rule=3", lambda: audit(rule=3), "rule"),
]


@pytest.mark.parametrize(("call", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_gets_a_named_error(
    call: Callable[[], Any], needle: str, request: pytest.FixtureRequest
) -> None:
    if torch is None and any(w in request.node.callspec.id for w in ("torch", "watch")):
        pytest.skip("needs torch")
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    err = info.value
    message = str(err)
    # named: the argument (or its key path) appears in the message as a word
    pattern = r"(?<![A-Za-z0-9_])" + re.escape(needle) + r"(?![A-Za-z0-9_])"
    assert re.search(pattern, message, re.IGNORECASE), f"{type(err).__name__}: {message}"
    # raised by optcheck itself (or hypothesis's InvalidArgument in the strategies), not from deep in a library
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    assert tb is not None
    raised_in = Path(tb.tb_frame.f_code.co_filename).resolve()
    assert Path(optcheck.__file__).resolve().parent in raised_in.parents, f"raised in {raised_in}: {message}"
    # and the caller's arrays are untouched
    for before, now in zip(PRISTINE, (P, G, S0, P1, S1), strict=True):
        for a, b in zip(_leaves(before), _leaves(now), strict=True):
            assert np.array_equal(a, b)


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _leaves(v)]
    return [tree]


def test_named_errors_are_usage_errors() -> None:
    """A bad value is a UsageError (ValueError); a value of the wrong type is a TypeError that is also one."""
    with pytest.raises(UsageError):
        optcheck.Guard("adam", seed=-1)
    with pytest.raises(TypeError) as info:
        optcheck.Guard("adam", seed="x")
    assert isinstance(info.value, UsageError)
    with pytest.raises(UsageError):
        inv.accumulator_decreased(np.full(3, 5.0), np.ones((3, 1)))


def test_mismatched_shapes_no_longer_hide_violations() -> None:
    """The wrong answers the issue lists now come back as errors, and the right inputs still find the bug."""
    before, after = np.full(3, 5.0), np.ones(3)
    assert [v.id for v in inv.accumulator_decreased(before, after)] == ["accumulator-decreased"]
    moved = {k: v + 1.0 for k, v in P.items()}
    zero = {k: np.zeros_like(v) for k, v in P.items()}
    assert [v.id for v in inv.update_without_gradient(P, zero, moved)] == ["update-without-gradient"] * 2
    assert inv.non_finite(np.array([1.0, np.nan]))[0].id == "non-finite"


def test_step_on_matrix_would_have_been_a_matrix_product() -> None:
    """Why np.matrix is refused: the rule's elementwise * is a matrix product there."""
    m = matrix(np.ones((2, 2)))
    assert not np.array_equal(np.asarray(m * m), np.ones((2, 2)) * np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"np\.asarray\(grads\)"):
        ADAM.step(np.ones((2, 2)), m, ADAM.init(np.ones((2, 2))))


def _fuzzer() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_api.py"
    spec = importlib.util.spec_from_file_location("optcheck_fuzz_api", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fuzzer_finds_no_raw_traceback_and_no_wrong_answer() -> None:
    fuzz = _fuzzer()
    outcomes, broken = fuzz.run(quiet=True)
    assert broken == []  # every entry point's valid call still works
    bad = [
        f"[{o.case.entry}] {o.case.arg} = {o.case.label}: {o.detail}"
        for o in outcomes
        if o.kind in ("raw", "wrong", "accepted")
    ]
    assert bad == [], "\n".join(bad)
    assert len({o.case.entry for o in outcomes}) >= 50
