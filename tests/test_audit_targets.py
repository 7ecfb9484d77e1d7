"""Tests of the audit's executor protocol (optcheck.audit.targets, ._worker), in process and in a child."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optcheck.audit._wire import TARGET, Closure, GradFn, Obj, Opaque, Recorder, Ref
from optcheck.audit.targets import InProcessWorker, Limits, ProcessWorker, TargetFailure, parse_target

HOSTILE = Path(__file__).resolve().parent / "targets" / "hostile"


def fit(w: np.ndarray, grad_fn: Any, steps: int = 3, lr: float = 0.1, callback: Any = None) -> np.ndarray:
    """A loop driver: the target asks for gradients itself."""
    for i in range(steps):
        w = w - lr * grad_fn(w)
        if callback is not None:
            callback(i, w)
    return w


class Opt:
    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr
        self.t = 0
        self.fn = len

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for k in params:
            params[k] -= self.lr * grads[k]  # in place


def lookup(d: dict[str, Any]) -> Any:
    return d["missing"]


def test_put_call_snap_alias_in_process() -> None:
    w = InProcessWorker(Opt, "Opt")
    info = w.load()
    assert info.kind == "class" and [p.name for p in info.params] == ["lr"]
    assert info.step_params is not None and [p.name for p in info.step_params] == ["params", "grads"]
    b = w.batch()
    b.clear()
    p = b.put({"W": np.ones(3)}, name="P")
    opt = b.call(TARGET, [], {"lr": 0.5}, name="OPT")
    g = {"W": np.full(3, 2.0)}
    b.call(opt.attr("step"), [p, b.put(g, name="G")])
    i_p, i_opt, i_t = b.snap(p), b.snap(opt), b.snap(opt.attr("t"))
    res = b.run()
    np.testing.assert_array_equal(res[i_p]["W"], np.zeros(3))  # updated in place, seen in the snapshot
    assert isinstance(res[i_opt], Obj) and res[i_opt].attrs["t"] == 1 and res[i_t] == 1
    assert isinstance(res[i_opt].attrs["fn"], Opaque)
    np.testing.assert_array_equal(g["W"], np.full(3, 2.0))  # the parent's arrays are never touched
    b = w.batch()
    b.put(Ref("P"), name="Q")  # an alias, not a copy
    b.call(Ref("OPT").attr("step"), [Ref("Q"), Ref("G")])
    i = b.snap(Ref("P"))
    np.testing.assert_array_equal(b.run()[i]["W"], np.full(3, -1.0))


def test_loop_driver_with_scripted_gradients_and_a_callback() -> None:
    w = InProcessWorker(fit, "fit")
    b = w.batch()
    gf = b.put(GradFn([np.array([1.0]), np.array([2.0]), np.array([4.0])]), name="GF")
    cb = b.put(Recorder(), name="CB")
    out = b.call(TARGET, [np.zeros(1), gf], {"callback": cb})
    i_out, i_calls, i_cb = b.snap(out), b.snap(gf.attr("calls")), b.snap(cb.attr("calls"))
    res = b.run()
    np.testing.assert_allclose(res[i_out], [-0.7])
    seen = [c[0][0] for c in res[i_calls]]  # ((w,), {}) at each call
    np.testing.assert_allclose(np.concatenate(seen), [0.0, -0.1, -0.3])
    assert [c[0][0] for c in res[i_cb]] == [0, 1, 2]
    b = w.batch()
    b.call(TARGET, [np.zeros(1), GradFn([np.ones(1)])], {"steps": 2})
    with pytest.raises(TargetFailure) as e:
        b.run()
    assert e.value.id == "raised-exception" and e.value.type_name == "IndexError"


def test_failures_carry_the_key_of_a_key_error() -> None:
    w = InProcessWorker(lookup, "lookup")
    b = w.batch()
    b.call(TARGET, [{"a": 1}])
    with pytest.raises(TargetFailure) as e:
        b.run()
    assert (e.value.id, e.value.type_name, e.value.key) == ("raised-exception", "KeyError", "missing")
    assert "lookup" in e.value.traceback and "_worker.py" not in e.value.traceback


def test_reply_limit_and_object_dtype_are_bad_returns() -> None:
    w = InProcessWorker(np.zeros, "zeros", Limits(max_reply=1 << 16))
    b = w.batch()
    b.snap(b.call(TARGET, [1 << 20]))
    with pytest.raises(TargetFailure, match="--max-reply") as e:
        b.run()
    assert e.value.id == "bad-return"
    b = w.batch()
    i = b.snap(b.call(TARGET, [3], {"dtype": "object"}))
    assert b.run()[i] == Opaque("ndarray", "dtype object")


def test_torch_tensors_and_closures() -> None:
    torch = pytest.importorskip("torch")
    from optcheck.audit._wire import Tensor

    w = InProcessWorker(torch.optim.SGD, "SGD")
    assert w.load().is_torch_optimizer
    b = w.batch()
    p = b.put(Tensor(np.ones(2), parameter=True), name="p")
    opt = b.call(TARGET, [[p]], {"lr": 0.5}, name="OPT")
    b.setattr(p, "grad", Tensor(np.array([1.0, 2.0])))
    b.call(opt.attr("step"), [Closure(Tensor(np.zeros(())))])
    i_p, i_g, i_d = b.snap(p), b.snap(p.attr("grad")), b.describe(opt.attr("step"))
    res = b.run()
    np.testing.assert_allclose(res[i_p], [0.5, 0.0])
    assert res[i_p].dtype == np.float64
    np.testing.assert_array_equal(res[i_g], [1.0, 2.0])
    assert [q["name"] for q in res[i_d]["params"]] == ["closure"]


def test_process_worker_runs_the_same_protocol_and_times_out() -> None:
    spec = parse_target(f"{HOSTILE / 'hang.py'}:update_parameters")
    with ProcessWorker(spec, limits=Limits(timeout=0.5)) as w:
        info = w.load()
        assert [p.name for p in info.params] == ["parameters", "grads", "learning_rate"]
        assert info.params[2].default == 0.01
        b = w.batch()
        b.call(TARGET, [{"W": np.ones(1)}, {"dW": np.ones(1)}])
        with pytest.raises(TargetFailure, match=r"within 0\.5 s") as e:
            b.run()
        assert e.value.id == "timeout" and w.restarts == 1
        scratch = w.scratch
        assert scratch is not None and Path(scratch).is_dir()
        b = w.batch()  # a fresh child answers
        i = b.describe(TARGET)
        assert b.run()[i]["name"] == "update_parameters"
    assert not Path(scratch).exists()


def apply(fn: Any, x: float) -> Any:
    return fn(x)


def test_user_objects_pass_in_process_and_are_a_usage_error_for_a_child() -> None:
    from optcheck.audit import AuditUsageError

    w = InProcessWorker(apply, "apply")
    b = w.batch()
    i = b.snap(b.call(TARGET, [lambda x: 2 * x, 3.0]))
    assert b.run()[i] == 6.0
    spec = parse_target(f"{HOSTILE / '_sgd.py'}:sgd")
    with ProcessWorker(spec) as pw:
        b = pw.batch()
        b.call(TARGET, [lambda x: x])
        with pytest.raises(AuditUsageError, match="cannot be sent to its process"):
            b.run()
