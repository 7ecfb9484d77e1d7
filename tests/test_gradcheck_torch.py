"""Tests of optcheck.check_torch: torch autograd checked by optcheck's finite differences.

Correct float32 functions, modules and custom autograd.Functions pass (where
torch.autograd.gradcheck false-alarms); a wrong custom backward is named, every wrong input and
entry of it; on float64 the verdicts agree with torch.autograd.gradcheck's; the gradcheck-style
boolean forms work.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import optcheck  # noqa: E402
from optcheck import GradientError, UsageError  # noqa: E402
from optcheck.gradcheck import GradientReport, check_torch  # noqa: E402

F = torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> Any:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, dtype: Any = torch.float32, seed: int = 0, grad: bool = True) -> Any:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype).requires_grad_(grad)


# ------------------------------------------------------------------------------------------------
# custom autograd.Functions, written for these tests (correct and wrong backward passes)
# ------------------------------------------------------------------------------------------------


class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
        ctx.save_for_backward(x, w)
        return x @ w.T + b

    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        x, w = ctx.saved_tensors
        return dout @ w, dout.T @ x, dout.sum(0)


class LinearWrong(Linear):
    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        x, w = ctx.saved_tensors
        dw = dout.T @ x
        dw[1, 2] = 0.0  # one entry of dw lost
        return dout @ w * 0.5, dw, dout.sum(0)  # and dx off by a factor


class SiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        s = torch.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        x, s = ctx.saved_tensors
        return dout * s * (1 + x * (1 - s))


class SiLUWrong(SiLU):
    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        _, s = ctx.saved_tensors
        return dout * s  # forgets the derivative of the sigmoid


class ClampedReLU(torch.autograd.Function):
    """max(x, 0): a kink at exact zeros."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        (x,) = ctx.saved_tensors
        return dout * (x > 0).to(dout.dtype)


# ------------------------------------------------------------------------------------------------
# float32: correct code passes
# ------------------------------------------------------------------------------------------------


def _mlp_loss(x: Any, w1: Any, w2: Any) -> Any:
    return F.cross_entropy(torch.tanh(x @ w1) @ w2, torch.tensor([0, 2, 1, 0, 2]))


FLOAT32_CASES: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "mlp loss": (_mlp_loss, (randn(5, 4, seed=1), randn(4, 6, seed=2), randn(6, 3, seed=3))),
    "layer norm": (lambda x, w: F.layer_norm(x, (6,), weight=w), (randn(4, 6, seed=4), randn(6, seed=5))),
    "conv2d": (
        lambda x, w: F.conv2d(x, w, padding=1),
        (randn(1, 2, 4, 4, seed=6), randn(2, 2, 3, 3, seed=7)),
    ),
    "logsumexp": (lambda x: torch.logsumexp(x * 10, dim=1).sum(), (randn(4, 7, seed=8),)),
    "custom Linear": (Linear.apply, (randn(5, 4, seed=9), randn(3, 4, seed=10), randn(3, seed=11))),
    "custom SiLU": (SiLU.apply, (randn(6, 5, seed=12),)),
}


@pytest.mark.parametrize("case", list(FLOAT32_CASES))
def test_correct_float32_code_passes(case: str) -> None:
    fn, inputs = FLOAT32_CASES[case]
    before = [t.detach().clone() for t in inputs]
    report = check_torch(fn, *inputs)
    assert isinstance(report, GradientReport)
    assert report.passed, str(report)
    for t, b in zip(inputs, before, strict=True):
        assert t.dtype == torch.float32 and torch.equal(t.detach(), b) and t.grad is None


def test_torch_gradcheck_false_alarms_on_the_same_float32_code() -> None:
    """The known limitation (torch issues #5351, #8659): a fixed step of 1e-6 in float32."""
    alarms = 0
    for fn, inputs in FLOAT32_CASES.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alarms += not torch.autograd.gradcheck(fn, inputs, raise_exception=False)
    assert alarms >= 4  # while check_torch passes every one (above)


def test_a_kink_at_exact_zeros_passes_as_a_subgradient() -> None:
    x = randn(3, 4, seed=13)
    with torch.no_grad():
        x[0, 1] = 0.0
        x[2, 3] = 0.0
    report = check_torch(ClampedReLU.apply, x)
    assert report.passed, str(report)
    assert {e.index for e in report.nondifferentiable} == {(0, 1), (2, 3)}


def test_modules_are_checked_with_their_parameters_named() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    report = check_torch(model, torch.randn(6, 4))
    assert report.passed, str(report)
    assert [c.key for c in report.coverage] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    cell = torch.nn.LSTMCell(3, 4)
    x = torch.randn(2, 3, requires_grad=True)
    report = check_torch(cell, x)
    assert report.passed, str(report)
    assert [c.key for c in report.coverage] == ["input", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]


# ------------------------------------------------------------------------------------------------
# a wrong custom backward: every wrong input and entry named
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_wrong_custom_backward_is_named_every_input_and_entry(dtype: Any) -> None:
    x, w, b = (
        randn(5, 4, dtype=dtype, seed=20),
        randn(3, 4, dtype=dtype, seed=21),
        randn(3, dtype=dtype, seed=22),
    )
    report = check_torch(LinearWrong.apply, x, w, b, mode="full")
    assert not report.passed
    keys = {e.key for e in report.failures}
    assert keys == {"x", "w"}  # both wrong inputs, b is right
    assert {e.index for e in report.failures if e.key == "w"} == {(1, 2)}
    assert len([e for e in report.failures if e.key == "x"]) == 20  # every entry of x
    assert any(h.startswith("the autograd gradient of x is 0.5 x") for h in report.hints), report.hints


def test_a_wrong_backward_in_float32_is_caught() -> None:
    report = check_torch(SiLUWrong.apply, randn(6, 5, seed=23))
    assert not report.passed and {e.key for e in report.failures} == {"x"}


# ------------------------------------------------------------------------------------------------
# float64: the same verdicts as torch.autograd.gradcheck
# ------------------------------------------------------------------------------------------------


def _f64(*shapes: tuple[int, ...]) -> tuple[Any, ...]:
    return tuple(randn(*s, dtype=torch.float64, seed=30 + k) for k, s in enumerate(shapes))


VERDICT_CASES: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "Linear": (Linear.apply, _f64((5, 4), (3, 4), (3,))),
    "LinearWrong": (LinearWrong.apply, _f64((5, 4), (3, 4), (3,))),
    "SiLU": (SiLU.apply, _f64((4, 4))),
    "SiLUWrong": (SiLUWrong.apply, _f64((4, 4))),
    "mlp": (_mlp_loss, _f64((5, 4), (4, 6), (6, 3))),
    "softplus": (lambda x: F.softplus(x).sum(), _f64((3, 3))),
}


@pytest.mark.parametrize("case", list(VERDICT_CASES))
def test_float64_verdicts_agree_with_torch_gradcheck(case: str) -> None:
    fn, inputs = VERDICT_CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.autograd.gradcheck(fn, inputs, raise_exception=False)
    ours = check_torch(fn, *inputs)
    assert ours.passed == theirs, str(ours)
    assert ours.passed == (not case.endswith("Wrong"))


# ------------------------------------------------------------------------------------------------
# the gradcheck-style forms and bad input
# ------------------------------------------------------------------------------------------------


def test_boolean_forms_like_torch_gradcheck() -> None:
    x = randn(4, 3, dtype=torch.float64, seed=40)
    assert check_torch(SiLU.apply, (x,), raise_exception=True) is True
    assert check_torch(SiLU.apply, (x,), raise_exception=False) is True
    assert check_torch(SiLUWrong.apply, (x,), raise_exception=False) is False
    with pytest.raises(GradientError, match="Gradient check FAILED") as info:
        check_torch(SiLUWrong.apply, (x,), raise_exception=True)
    assert isinstance(info.value, AssertionError) and not info.value.report.passed
    report = check_torch(SiLU.apply, (x,), eps=1e-6, atol=1e-5)
    assert report.passed and any("eps=1e-06, atol=1e-05" in n for n in report.notes)


def test_only_inputs_requiring_grad_are_checked_and_others_pass_through() -> None:
    x = randn(4, 3, seed=41)
    w = randn(3, 2, seed=42, grad=False)
    labels = torch.tensor([0, 1, 1, 0])
    report = check_torch(lambda x, w, y: F.cross_entropy(x @ w, y), x, w, labels)
    assert report.passed and [c.key for c in report.coverage] == ["x"]


def test_the_top_level_name_and_lazy_torch_import() -> None:
    assert optcheck.check_torch is check_torch


def test_bad_input() -> None:
    with pytest.raises(UsageError, match="there is no floating-point tensor to check"):
        check_torch(lambda a: a * 2, torch.arange(3))
    with pytest.raises(UsageError, match="fn returned a str"):
        check_torch(lambda a: "loss", randn(3, seed=1))
    with pytest.raises(UsageError, match=r"upstream\[0\] has shape \(2,\) but fn's output has shape \(3,\)"):
        check_torch(lambda a: a * 2, randn(3, seed=1), upstream=torch.ones(2))
    with pytest.raises(TypeError, match="fn must be callable"):
        check_torch(3, randn(3, seed=1))  # type: ignore[call-overload]
    with pytest.raises(UsageError, match="names= must give one name per input"):
        check_torch(lambda a: a.sum(), randn(3, seed=1), names=("a", "b"))
