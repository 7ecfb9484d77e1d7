"""optcheck.watch: one line to guard a torch.optim optimizer through its step hooks."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import optcheck  # noqa: E402
from optcheck.guard import Watch, torch_rule  # noqa: E402

# every torch.optim class the rules cover: default hyperparameters, then non-default ones
OPTIMIZERS: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.05, "decoupled_weight_decay": True, "maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.005, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 1e-3}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 1e-3}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 1e-3, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 1e-3}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.02, "lambd": 1e-3, "alpha": 0.5, "t0": 50, "weight_decay": 1e-3}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.02, "etas": (0.4, 1.1), "step_sizes": (1e-5, 10.0), "maximize": True}),
    ("Adafactor", {}),
    ("Adafactor", {"lr": 0.02, "beta2_decay": -0.7, "d": 2.0, "weight_decay": 0.01}),
]


def _model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))


def _groups(model: Any, cls_name: str) -> list[dict[str, Any]]:
    """Two parameter groups: the first layer with the constructor's values, the second without decay."""
    second: dict[str, Any] = {"params": list(model[2].parameters()), "weight_decay": 0.0}
    if cls_name not in ("Rprop",):
        second["lr"] = 0.003 if cls_name not in ("Adadelta",) else 0.3
    if cls_name == "Rprop":
        del second["weight_decay"]
    return [{"params": list(model[0].parameters())}, second]


def _train(model: Any, opt: Any, steps: int, seed: int = 1, closure: bool = False) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 6, generator=gen)
    y = torch.randn(16, 3, generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls_name", "kwargs"), OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)]
)
def test_watch_is_silent_on_every_torch_optimizer(cls_name: str, kwargs: dict[str, Any]) -> None:
    model = _model()
    opt = getattr(torch.optim, cls_name)(_groups(model, cls_name), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invariants only" warning: every class maps to a rule
        handle = optcheck.watch(opt, names=model, shadow=True)
    assert all(r is not None for r in handle.rules)
    with handle:
        _train(model, opt, 200)
    assert handle.checked == 200
    assert handle.violations == []
    # the second group's hyperparameters were read from its own group
    assert handle.rules[1] is not None and handle.rules[0] is not None
    if "lr" in _groups(model, cls_name)[1]:
        assert handle.rules[1].hyper["lr"] == _groups(model, cls_name)[1]["lr"]


@pytest.mark.parametrize("sample", [None, 8])
@pytest.mark.parametrize(("cls_name", "kwargs"), [OPTIMIZERS[4], OPTIMIZERS[9], OPTIMIZERS[11]])
def test_watch_full_and_sampled_are_silent(cls_name: str, kwargs: dict[str, Any], sample: int | None) -> None:
    model = _model()
    opt = getattr(torch.optim, cls_name)(_groups(model, cls_name), **kwargs)
    with optcheck.watch(opt, names=model, sample=sample) as handle:
        _train(model, opt, 60)
    assert handle.checked == 60 and handle.violations == []


def test_rule_read_from_the_class_and_groups() -> None:
    model = _model()
    opt = torch.optim.Adam(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.1}],
        lr=0.01,
        betas=(0.8, 0.9),
        amsgrad=True,
        weight_decay=0.01,
    )
    r0, r1 = torch_rule(opt, 0), torch_rule(opt, 1)
    assert r0 is not None and r1 is not None
    assert (r0.name, r0.hyper["lr"], r0.hyper["beta1"], r0.hyper["beta2"], r0.hyper["amsgrad"]) == (
        "adam",
        0.01,
        0.8,
        0.9,
        True,
    )
    assert r1.hyper["lr"] == 0.1
    assert torch_rule(torch.optim.AdamW(model.parameters())).name == "adamw"  # type: ignore[union-attr]
    sgd = torch_rule(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, maximize=True))
    assert sgd is not None and sgd.hyper["nesterov"] is True and sgd.hyper["maximize"] is True
    rms = torch_rule(torch.optim.RMSprop(model.parameters(), centered=True))
    assert rms is not None and rms.hyper["centered"] is True
    nadam = torch_rule(
        torch.optim.NAdam(model.parameters(), momentum_decay=0.01, decoupled_weight_decay=True)
    )
    assert (
        nadam is not None and nadam.hyper["momentum_decay"] == 0.01 and nadam.hyper["decoupled_weight_decay"]
    )


def test_a_learning_rate_schedule_is_followed() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 + 5 * k)  # lr grows 50x
    with optcheck.watch(opt, names=model) as handle:
        for _ in range(10):
            _train(model, opt, 1)
            sched.step()
    assert handle.violations == [] and handle.rules[0] is not None
    assert math.isclose(handle.rules[0].hyper["lr"], 0.001 * (1 + 5 * 9))


def test_names_from_the_model_and_default_names() -> None:
    model = _model()
    opt = _BadSecondMoment(model.parameters(), lr=0.01)
    handle = optcheck.watch(opt, rule="adam", names=model)
    with pytest.raises(optcheck.InvariantError) as e:
        _train(model, opt, 5)
    handle.remove()
    assert "['0.weight']" in str(e.value)
    model2 = _model()
    opt2 = _BadSecondMoment(model2.parameters(), lr=0.01)
    with optcheck.watch(opt2, rule="adam"), pytest.raises(optcheck.InvariantError) as e2:
        _train(model2, opt2, 5)
    assert "group0.param0" in str(e2.value)


# ---------------------------------------------------------------------------------------------
# Planted bugs, each a fresh torch.optim.Optimizer subclass (one per catalog family)
# ---------------------------------------------------------------------------------------------


class _AdamBase(torch.optim.Optimizer):  # type: ignore[misc]
    """An Adam written out by hand, with hooks for one bug at a time."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad}
        )

    def second_moment_input(self, g: Any, p: Any, wd: float) -> Any:
        return g * g

    def bc1(self, beta: float, t: int) -> float:
        return 1 - beta**t

    def bc2(self, beta: float, t: int) -> float:
        return 1 - beta**t

    def denominator(self, v_hat: Any, eps: float) -> Any:
        return v_hat.sqrt() + eps

    def first_moment(self, state: dict[str, Any], g: Any, b1: float) -> Any:
        return state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)

    def keep_max(self, state: dict[str, Any], v: Any) -> Any:
        torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        return state["max_exp_avg_sq"]

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = int(state["step"].item())
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                m = self.first_moment(state, g, b1)
                state["exp_avg_sq"].mul_(b2).add_(
                    self.second_moment_input(g, p, group["weight_decay"]), alpha=1 - b2
                )
                v = self.keep_max(state, state["exp_avg_sq"]) if group["amsgrad"] else state["exp_avg_sq"]
                m_hat = m / self.bc1(b1, t)
                v_hat = v / self.bc2(b2, t)
                p.sub_(group["lr"] * self.update(m_hat, v_hat, group["eps"]))
        return None

    def update(self, m_hat: Any, v_hat: Any, eps: float) -> Any:
        return m_hat / self.denominator(v_hat, eps)


class _BadSecondMoment(_AdamBase):
    """square-term: the L2 penalty added to the squared gradient (a term that is not a square)."""

    def second_moment_input(self, g: Any, p: Any, wd: float) -> Any:
        return g * g + 0.5 * p


class _EpsOutside(_AdamBase):
    """eps placement: m̂/√v̂ + ε, so 0/0 where a gradient has been zero since the start."""

    def update(self, m_hat: Any, v_hat: Any, eps: float) -> Any:
        return m_hat / v_hat.sqrt() + eps


class _PowerBiasCorrection(_AdamBase):
    """bias correction: (1 − β1)^t instead of 1 − β1^t for the first moment, a step 10^t times too large."""

    def bc1(self, beta: float, t: int) -> float:
        return (1 - beta) ** t


class _MaxNotStored(_AdamBase):
    """state not stored: AMSGrad's maximum computed into a local name, the state never updated."""

    def first_moment(self, state: dict[str, Any], g: Any, b1: float) -> Any:
        return state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)

    def keep_max(self, state: dict[str, Any], v: Any) -> Any:
        return torch.maximum(state["max_exp_avg_sq"], v)


class _NoBiasCorrection(_AdamBase):
    """bias correction missing: m/√v at step 1 is √(1−β2)/(1−β1)·sign(g) ≈ 0.32, about 3·lr too far."""

    def bc1(self, beta: float, t: int) -> float:
        return 1.0

    def bc2(self, beta: float, t: int) -> float:
        return 1.0


class _FirstMomentNotStored(_AdamBase):
    """state not stored: the first moment rebound to a local name, so every step starts from m = 0."""

    def first_moment(self, state: dict[str, Any], g: Any, b1: float) -> Any:
        m = state["exp_avg"]
        m = m * b1 + (1 - b1) * g
        return m


def _catch(
    opt_cls: type, steps: int = 20, zero_rows: bool = False, shadow: bool = False, **kw: Any
) -> optcheck.InvariantError:
    model = _model()
    if zero_rows:
        with torch.no_grad():
            model[0].weight[:3] = 0.0  # with zero inputs below, these rows never get a gradient
    opt = opt_cls(model.parameters(), **kw)
    with optcheck.watch(opt, rule="adam", names=model, shadow=shadow):
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(16, 6, generator=gen)
        if zero_rows:
            x[:, :2] = 0.0  # the first two inputs are zero: their weight columns have zero gradients
        y = torch.randn(16, 3, generator=gen)
        with pytest.raises(optcheck.InvariantError) as e:
            for _ in range(steps):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
    return e.value


def test_planted_square_term_is_named() -> None:
    err = _catch(_BadSecondMoment, lr=0.01)
    v = err.violations[0]
    assert v.id == "negative-second-moment"
    assert v.where == "state['exp_avg_sq']['0.weight']"
    assert "not a square" in v.hint and v.step == 1


def test_planted_eps_outside_is_named() -> None:
    err = _catch(_EpsOutside, zero_rows=True, lr=0.01)
    v = err.violations[0]
    assert v.id == "non-finite" and v.where.startswith("params['0.weight']") and v.step == 1
    assert v.index is not None and v.index[1] < 2  # a zero-gradient input column
    assert "0/0" in str(err)


def test_planted_bias_correction_power_is_named() -> None:
    err = _catch(_PowerBiasCorrection, lr=0.001)
    v = err.violations[0]
    assert v.id == "update-too-large" and v.where == "params['0.weight']"


def test_planted_amsgrad_max_not_stored_is_named() -> None:
    err = _catch(_MaxNotStored, lr=0.01, amsgrad=True)
    v = err.violations[0]
    assert (
        v.id == "accumulator-decreased" and v.where == "state['max_exp_avg_sq']['0.weight']" and v.step == 1
    )
    assert "not stored" in v.hint


def test_planted_missing_bias_correction_is_named() -> None:
    err = _catch(_NoBiasCorrection, lr=0.01)
    v = err.violations[0]
    assert v.id == "update-too-large" and v.step == 1 and "bias correction" in v.hint


def test_planted_first_moment_not_stored_needs_the_shadow() -> None:
    model = _model()
    opt = _FirstMomentNotStored(model.parameters(), lr=0.01)
    with optcheck.watch(opt, rule="adam", names=model) as quiet:
        _train(model, opt, 20)
    assert quiet.violations == []  # every invariant holds: only the reference can tell
    err = _catch(_FirstMomentNotStored, lr=0.01, shadow=True)
    v = err.violations[0]
    # at step 1 the stored first moment is still 0 where the rule has (1 − β1)·g
    assert v.id == "differs-from-reference" and v.where == "state['exp_avg']['0.weight']" and v.step == 1


def test_correct_hand_written_adam_is_silent_with_the_shadow() -> None:
    model = _model()
    opt = _AdamBase(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.003}],
        lr=0.01,
        amsgrad=True,
        weight_decay=0.01,
    )
    with optcheck.watch(opt, rule="adam", names=model, shadow=True) as h:
        _train(model, opt, 100)
    assert h.violations == [] and h.checked == 100


# ---------------------------------------------------------------------------------------------
# Bad input, unmappable classes, parameters without gradients, remove()
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, "adam", lambda: None, [torch.zeros(2)], torch.zeros(2)])
def test_watch_on_a_non_optimizer_is_one_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        optcheck.watch(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rule": "adamm"}, "unknown rule"),
        ({"rule": 3}, "rule must be"),
        ({"every": 0}, "every=0"),
        ({"sample": 0}, "sample=0"),
        ({"mode": "loud"}, "mode='loud'"),
        ({"shadow": "yes"}, "shadow='yes'"),
        ({"names": 5}, "names must be"),
    ],
)
def test_watch_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = copy.copy(opt._optimizer_step_pre_hooks)
    with pytest.raises((ValueError, TypeError), match=match):
        optcheck.watch(opt, **kwargs)
    assert opt._optimizer_step_pre_hooks == before  # nothing left behind


def test_unmappable_class_gets_invariants_only_said_once() -> None:
    model = _model()
    opt = _AdamBase([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.1}])
    with pytest.warns(UserWarning, match="invariants only") as rec:
        handle = optcheck.watch(opt, names=model)
    assert len(rec) == 1 and handle.rules == [None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never said again
        _train(model, opt, 30)
    handle.remove()
    assert handle.violations == [] and handle.checked == 30
    # the rule-free invariants still stop a NaN, at the step that made it
    model2 = _model()
    opt2 = _BadSecondMoment(model2.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="invariants only"):
        handle2 = optcheck.watch(opt2, names=model2)
    with pytest.raises(optcheck.InvariantError) as e:
        _train(model2, opt2, 30)
    handle2.remove()
    assert e.value.violations[0].id == "non-finite" and e.value.violations[0].step == 1


def test_subclass_with_its_own_hyperparameter_is_not_mapped() -> None:
    class Mine(torch.optim.Adam):  # type: ignore[misc]
        def __init__(self, params: Any, lr: float = 1e-3, clip: float = 1.0) -> None:
            super().__init__(params, lr=lr)
            for g in self.param_groups:
                g["clip"] = clip

    class Plain(torch.optim.Adam):  # type: ignore[misc]
        pass

    model = _model()
    with pytest.warns(UserWarning, match=r"\['clip'\]"):
        h = optcheck.watch(Mine(model.parameters()))
    h.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h2 = optcheck.watch(Plain(model.parameters()))
    assert h2.rules[0] is not None and h2.rules[0].name == "adam"
    h2.remove()


def test_nonfinite_gradient_is_reported_with_the_torch_trap_hint() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with optcheck.watch(opt, names=model), pytest.raises(optcheck.InvariantError) as e:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(torch.randn(4, 6)), torch.randn(4, 3)).backward()
        model[2].bias.grad[1] = float("nan")
        opt.step()
    v = e.value.violations[0]
    assert v.id == "non-finite" and "grads['2.bias']" in v.where


def test_parameter_without_gradient_must_not_move() -> None:
    class DecayAll(torch.optim.Optimizer):  # type: ignore[misc]
        def __init__(self, params: Any) -> None:
            super().__init__(params, {"lr": 0.1})

        @torch.no_grad()
        def step(self, closure: Any = None) -> None:
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(0.99)  # decays even the parameters without a gradient
                    if p.grad is not None:
                        p.sub_(group["lr"] * p.grad)

    model = _model()
    model[2].weight.requires_grad_(False)
    opt = DecayAll(model.parameters())
    with pytest.warns(UserWarning, match="invariants only"):
        handle = optcheck.watch(opt, names=model)
    with pytest.raises(optcheck.InvariantError) as e:
        _train(model, opt, 3)
    handle.remove()
    v = e.value.violations[0]
    assert (
        v.id == "update-without-gradient" and v.where == "params['2.weight']" and ".grad is None" in v.message
    )
    # and torch's own optimizers leave such a parameter alone: silent
    model2 = _model()
    model2[2].weight.requires_grad_(False)
    opt2 = torch.optim.AdamW(model2.parameters(), weight_decay=0.1)
    with optcheck.watch(opt2, names=model2) as h2:
        _train(model2, opt2, 10)
    assert h2.violations == []


def test_remove_restores_the_optimizer_exactly() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, 2)
    pre, post = dict(opt._optimizer_step_pre_hooks), dict(opt._optimizer_step_post_hooks)
    attrs = dict(vars(opt))
    state = copy.deepcopy(opt.state_dict())
    handle = optcheck.watch(opt, names=model)
    assert isinstance(handle, Watch) and len(opt._optimizer_step_pre_hooks) == len(pre) + 1
    _train(model, opt, 3)
    handle.remove()
    handle.remove()  # idempotent
    assert dict(opt._optimizer_step_pre_hooks) == pre and dict(opt._optimizer_step_post_hooks) == post
    assert vars(opt).keys() == attrs.keys() and type(opt) is torch.optim.Adam
    # the optimizer continues exactly as an unwatched copy does
    twin_model = copy.deepcopy(model)
    twin = torch.optim.Adam(twin_model.parameters(), lr=0.01)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))  # state_dict() holds references
    _train(model, opt, 3)
    _train(twin_model, twin, 3)
    for a, b in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(state["state"]) == len(opt.state_dict()["state"])


def test_context_manager_removes_and_every_skips() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    with optcheck.watch(opt, every=3) as h:
        _train(model, opt, 7)
    assert (h.steps, h.checked) == (7, 3)
    _train(model, opt, 2)
    assert h.steps == 7


def test_modes_warn_callable_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    opt = _BadSecondMoment(model.parameters(), lr=0.01)
    got: list[Any] = []
    with optcheck.watch(opt, rule="adam", mode=got.append):
        _train(model, opt, 2)
    assert got and got[0][0].id == "negative-second-moment"
    with optcheck.watch(opt, rule="adam", mode="warn"), pytest.warns(optcheck.InvariantWarning):
        _train(model, opt, 1)
    monkeypatch.setenv("OPTCHECK_GUARD", "off")
    with optcheck.watch(opt, rule="adam") as h:
        _train(model, opt, 2)
    assert h.checked == 0


def test_sparse_gradients_are_watched() -> None:
    emb = torch.nn.Embedding(20, 4, sparse=True)
    opt = torch.optim.Adagrad(emb.parameters(), lr=0.1)
    with optcheck.watch(opt, names={"emb": emb.weight}) as h:
        for i in range(10):
            opt.zero_grad()
            emb(torch.tensor([i % 5, 7])).sum().backward()
            opt.step()
    assert h.violations == [] and h.checked == 10
