"""The torch option audit: groups, dtypes, foreach/fused/maximize, grad None, sparse, closure, state_dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optcheck.audit import _wire  # noqa: E402
from optcheck.audit.engine import Auditor, run_audit  # noqa: E402
from optcheck.audit.torch_options import SCENARIOS, bf16_round  # noqa: E402


class _Adam(torch.optim.Optimizer):  # type: ignore[misc]
    """A hand-written Adam with a switch for each planted bug."""

    bug = ""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        )
        self._t = 0

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._t += 1
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr = self.defaults["lr"] if self.bug == "group-lr" else group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["maximize"] and self.bug != "maximize":
                    g = -g
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = self._t if self.bug == "python-step" else int(state["step"].item())
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (state["exp_avg_sq"] / (1 - b2**t)).sqrt().add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1**t))
        return loss


class GroupLrBug(_Adam):
    """Reads the constructor's lr instead of the group's: only a second group shows it."""

    bug = "group-lr"


class MaximizeBug(_Adam):
    """Accepts maximize=True and ignores it."""

    bug = "maximize"


class ReloadBug(_Adam):
    """Counts steps in a Python attribute that state_dict() does not carry: bias correction restarts."""

    bug = "python-step"


def _audit(cls: type, **hyper: Any) -> Auditor:
    a = Auditor(cls, "adam", hyper={"lr": 0.01, **hyper}, examples=3, steps=3, isolate=False)
    a.run()
    return a


@pytest.mark.slow
def test_torch_adam_passes_every_situation() -> None:
    a = _audit(torch.optim.Adam, weight_decay=0.01)
    assert not [f for f in a.findings if f.startswith("torch-")], a.findings
    checked = "; ".join(a.torch_options)
    for label in (
        "two parameter groups",
        "bfloat16",
        "fused=True",
        "maximize=True",
        ".grad is None",
        "closure",
        "load_state_dict",
    ):
        assert label in checked
    assert any(n.startswith("sparse gradients (not supported") for n in a.torch_options_not_run)
    text = str(a.report())
    assert "Also run (torch), each against the reference:\n  - two parameter groups" in text
    assert "Not run (torch):\n  - sparse gradients" in text


@pytest.mark.slow
def test_correct_hand_written_adam_passes() -> None:
    a = _audit(_Adam, weight_decay=0.01)
    assert a.findings == {}, {k: f.message for k, f in a.findings.items()}


@pytest.mark.slow
def test_bug_only_in_the_second_group_is_found_and_named() -> None:
    a = _audit(GroupLrBug)
    assert set(a.findings) == {"torch-groups"}, {k: f.message for k, f in a.findings.items()}
    f = a.findings["torch-groups"]
    assert "two parameter groups" in f.message and "params['u']" in f.message and "second group" in f.message
    assert f.step == 1


@pytest.mark.slow
def test_bug_only_with_maximize_is_found_and_named() -> None:
    a = _audit(MaximizeBug)
    assert set(a.findings) == {"torch-maximize"}, {k: f.message for k, f in a.findings.items()}
    assert a.findings["torch-maximize"].message.startswith("with maximize=True")


@pytest.mark.slow
def test_bug_only_after_load_state_dict_is_found_and_named() -> None:
    a = _audit(ReloadBug)
    assert set(a.findings) == {"torch-state-dict"}, {k: f.message for k, f in a.findings.items()}
    f = a.findings["torch-state-dict"]
    assert "load_state_dict() after step 3" in f.message and f.step == 4
    assert "steps 1-3 before the state_dict round trip agreed" in f.message


def test_bf16_round_is_torch_rounding() -> None:
    x = np.random.default_rng(0).normal(size=1000).astype(np.float32) * 10.0 ** np.arange(-5, 5).repeat(100)
    x[:3] = [np.inf, -np.inf, 0.0]
    want = torch.from_numpy(x).bfloat16().float().numpy()
    assert np.array_equal(bf16_round(x), want)


def test_wire_carries_bfloat16_tensors_and_a_real_closure() -> None:
    from optcheck.audit.targets import InProcessWorker

    w = InProcessWorker(lambda: None, "noop")
    b = w.batch()
    b.clear()
    b.put(_wire.Tensor(np.array([1.0, 2.0], dtype=np.float32), parameter=True, dtype="bfloat16"), name="p")
    loss = _wire.LinearLoss([_wire.Ref("p")], [np.array([0.5, -1.0], dtype=np.float32)])
    b.put(loss, name="closure")
    b.call(_wire.Ref("closure"), [], name="L")
    i = b.snap(_wire.Ref("L"))
    j = b.snap(_wire.Ref("p").attr("grad"))
    k = b.snap(_wire.Ref("p").attr("dtype").attr("is_floating_point"))
    res = b.run(timeout=10)
    assert np.asarray(res[i]).reshape(-1).tolist() == [0.5 * 1.0 - 1.0 * 2.0]  # the loss Σ g·p
    assert np.array_equal(res[j], [0.5, -1.0])
    assert res[k] is True
    frame = _wire.encode(loss)
    back = _wire.decode(frame, specs=True)
    assert isinstance(back, _wire.LinearLoss) and np.array_equal(back.grads[0], [0.5, -1.0])
    t = _wire.decode(_wire.encode(_wire.Tensor(np.zeros(2), dtype="bfloat16")), specs=True)
    assert t.dtype == "bfloat16"
    with pytest.raises(_wire.ProtocolViolation):
        frame = _wire.encode(_wire.Tensor(np.zeros(2), dtype="bfloat16")).replace(
            b'"bfloat16"', b'"complex1"'
        )
        _wire.decode(frame, specs=True)


def test_every_situation_has_a_distinct_id() -> None:
    assert len({s.slug for s in SCENARIOS}) == len(SCENARIOS)


TARGETS = Path(__file__).resolve().parent / "targets"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "rule", "hyper", "expected", "words"),
    [
        ("torch_group-lr-ignored.py:GroupAdam", "adam", {"lr": 0.01}, "torch-groups", "params['u']"),
        (
            "torch_maximize-ignored.py:MaxSGD",
            "sgd",
            {"lr": 0.05, "momentum": 0.9},
            "torch-maximize",
            "maximize=True",
        ),
        ("torch_step-not-in-state.py:CountingAdam", "adam", {"lr": 0.01}, "torch-state-dict", "after step 3"),
    ],
)
def test_planted_option_bugs_in_a_child_process(
    file: str, rule: str, hyper: dict[str, Any], expected: str, words: str
) -> None:
    report = run_audit(str(TARGETS / file), rule, hyper=hyper, examples=3, steps=3)
    assert report.isolated
    errors = [f.id for f in report.findings if f.severity == "error"]
    assert errors == [expected], report.render_text()
    f = next(f for f in report.findings if f.id == expected)
    assert words in f.message
    assert report.to_dict()["torch_options"]["run"]


class RelativeStepAdafactor(torch.optim.Optimizer):  # type: ignore[misc]
    """transformers' Adafactor calling convention: lr=None means its relative step size; a manual lr
    together with relative_step=True is refused (the step itself is a plain SGD here: the binding is tested)."""

    def __init__(
        self, params: Any, lr: Any = None, relative_step: bool = True, weight_decay: float = 0.0
    ) -> None:
        if lr is not None and relative_step:
            raise ValueError("Cannot combine manual `lr` and `relative_step=True` options")
        super().__init__(params, {"lr": lr, "relative_step": relative_step, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-(group["lr"] or 1e-3))  # its own step size when lr is None


def test_a_default_of_none_is_not_overridden() -> None:
    a = Auditor(RelativeStepAdafactor, "sgd", examples=2, steps=2, isolate=False)
    report = a.run()
    assert "raised-exception" not in report.ids(), report.render_text()
    assert any("lr: the target's default is None" in n for n in report.notes)
    assert report.verdict == "pass", report.render_text()
