"""optcheck.trap on a torch loop: the first module whose output or gradient went non-finite is named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import optcheck  # noqa: E402


class LogHead(torch.nn.Module):  # type: ignore[misc]
    """A head that takes the log of its (possibly negative) activation: the planted bug."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, x: Any) -> Any:
        return torch.log(self.proj(x))


class SqrtAct(torch.nn.Module):  # type: ignore[misc]
    """|x| written as √(x²): finite forward, 0·inf = NaN derivative at an exact zero."""

    def forward(self, x: Any) -> Any:
        return torch.sqrt(x * x)


def _planted() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        torch.nn.ReLU(inplace=True),
        torch.nn.Sequential(LogHead()),
    )


def test_log_of_a_negative_activation_is_named_in_forward() -> None:
    model = _planted()
    x = torch.randn(16, 5)
    with pytest.raises(optcheck.InvariantError) as e, optcheck.trap(model):
        model(x).sum().backward()
    v = e.value.violations[0]
    assert v.id == "non-finite" and v.where.startswith("'2.0' (LogHead) forward")
    msg = str(e.value)
    assert "module '2.0' (LogHead) produced a non-finite output in the forward pass from finite inputs" in msg
    assert "NaN of 64 entries" in msg and "shape (16, 4)" in msg and "finite entries lie in [" in msg
    assert "log of a number <= 0" in msg
    assert v.count == int(torch.isnan(torch.log(model[2][0].proj(torch.relu(model[0](x))))).sum())


def test_a_nan_in_backward_is_named_at_the_module_whose_backward_made_it() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), SqrtAct(), torch.nn.Linear(6, 1))
    x = torch.randn(32, 4)
    with torch.no_grad():
        model[0].weight[0] = 0.0  # the first unit is exactly 0 for every input
        model[0].bias[0] = 0.0
    out = None
    with pytest.raises(optcheck.InvariantError) as e, optcheck.trap(model):
        out = model(x)
        assert torch.isfinite(out).all()  # the forward pass is clean
        out.sum().backward()
    msg = str(e.value)
    assert "module '1' (SqrtAct) produced a non-finite gradient in the backward pass" in msg, msg
    assert "gradient of '0' (Linear)'s output" in msg


def test_a_nan_made_in_the_loss_points_to_detect_anomaly() -> None:
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[:] = 0.0
        model[0].bias[:] = 0.0
    with pytest.raises(optcheck.InvariantError) as e, optcheck.trap(model):
        loss = torch.sqrt(model(torch.randn(4, 3))).sum()  # sqrt'(0) = inf, outside every module
        loss.backward()
    msg = str(e.value)
    assert "gradient arriving at module '0' (Linear)'s output" in msg
    assert "set_detect_anomaly(True)" in msg


def test_a_parameter_gradient_made_outside_modules_is_named() -> None:
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[0, 0] = 0.0
    with pytest.raises(optcheck.InvariantError) as e, optcheck.trap(model):
        loss = (
            model(torch.randn(4, 3)).pow(2).mean() + model[0].weight.abs().sqrt().sum()
        )  # a bad regulariser
        loss.backward()
    msg = str(e.value)
    assert "gradient of parameter '0.weight' is non-finite" in msg and "set_detect_anomaly" in msg


def test_clean_loop_with_inplace_relu_runs_and_hooks_are_removed() -> None:
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    reference = [p.detach().clone() for p in model.parameters()]
    twin = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 1))
    twin.load_state_dict(model.state_dict())
    with optcheck.trap(model):
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(not p._backward_hooks for p in model.parameters())
    # the trap changes nothing it watches: same result as without it
    opt2 = torch.optim.SGD(twin.parameters(), lr=0.01)
    for _ in range(5):
        opt2.zero_grad()
        torch.nn.functional.mse_loss(twin(x), y).backward()
        opt2.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, r) for a, r in zip(model.parameters(), reference, strict=True))


def test_trap_without_a_model_hooks_every_module_by_class() -> None:
    model = _planted()
    with (
        pytest.raises(optcheck.InvariantError, match=r"module LogHead produced a non-finite output"),
        optcheck.trap(),
    ):
        model(torch.randn(16, 5))
    model(torch.randn(2, 5))  # the global hooks are gone: no error outside the block


def test_input_already_non_finite_is_not_blamed_on_the_module() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    x = torch.tensor([[float("nan"), 1.0]])
    match = "input of module '0' \\(Linear\\) is already non-finite"
    with pytest.raises(optcheck.InvariantError, match=match), optcheck.trap(model):
        model(x)


def test_numpy_trap_still_works_with_torch_imported() -> None:
    with pytest.raises(optcheck.InvariantError, match="numpy: invalid value"), optcheck.trap():
        np.sqrt(np.array([-1.0]))


@pytest.mark.parametrize("bad", [np.zeros(2), "model", 3])
def test_trap_with_a_non_module_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"trap\(model\) takes a torch\.nn\.Module"), optcheck.trap(bad):
        pass
