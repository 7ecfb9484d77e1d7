"""NAdam: Adam with Nesterov momentum."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from .._core.errors import UsageError
from ._base import Rule, convention, hyper

Array = Any

MOMENTUM_SCHEDULE = {
    "torch": "μ_t = β1·(1 − ½·0.96^(t·momentum_decay)): torch.optim.NAdam (Dozat, 2016)",
    "keras": "μ_t = β1·(1 − ½·0.96^t): keras.optimizers.Nadam (torch's formula with momentum_decay = 1)",
    "constant": "μ_t = β1: optax.nadam, the schedule-free form m̂ = β1·m/(1 − β1^(t+1)) + (1 − β1)·g/(1 − β1^t)",
    "mlcommons": "m̂ = (β1·m + (1 − β1)·g)/(1 − β1^t) with the updated m: timm NAdamW, the MLCommons "
    "AlgoPerf NAdamW baseline",
}


@dataclasses.dataclass(frozen=True)
class NAdam(Rule):
    r"""NAdam (Dozat, 2016), as ``torch.optim.NAdam``.

    With g the gradient (−g when ``maximize``), t = step + 1, bc2 = 1 − beta2^t:

    * coupled L2: g ← g + weight_decay·p; ``decoupled_weight_decay``: p ← p·(1 − lr·weight_decay)
    * μ_t from the momentum schedule (``momentum_schedule``, below); mu_product ← mu_product·μ_t
    * exp_avg: m ← beta1·m + (1 − beta1)·g;  exp_avg_sq: v ← beta2·v + (1 − beta2)·g²
    * den = √(v/bc2) + eps
    * p ← p − lr·(1 − μ_t)/(1 − mu_product)·g/den − lr·μ_{t+1}/(1 − mu_product·μ_{t+1})·m/den

    Momentum schedules (a convention keyword):

    * ``"torch"``: μ_t = beta1·(1 − ½·0.96^(t·momentum_decay))
    * ``"keras"``: μ_t = beta1·(1 − ½·0.96^t) (Keras 3), i.e. torch's with momentum_decay = 1
    * ``"constant"``: μ_t = beta1 (optax.nadam), which makes mu_product = beta1^t
    * ``"mlcommons"`` (timm ``NAdamW``, the MLCommons AlgoPerf baseline): no schedule;
      p ← p − (lr/bc1)·(beta1·m + (1 − beta1)·g)/den with bc1 = 1 − beta1^t and the updated m

    ``momentum_decay`` is only used by the ``"torch"`` schedule.

    Defaults are torch's: lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0,
    momentum_decay=4e-3. State: ``step``, ``mu_product`` (a number, starts at 1),
    ``exp_avg``, ``exp_avg_sq``.
    """

    name: ClassVar[str] = "nadam"
    array_states: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    scalar_states: ClassVar[tuple[str, ...]] = ("step", "mu_product")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "mu_product": "schedule",
        "exp_avg": "first-moment",
        "exp_avg_sq": "second-moment",
    }
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {"betas": ("beta1", "beta2")}

    lr: float = hyper(2e-3, low=0.0, doc="learning rate")
    beta1: float = hyper(0.9, low=0.0, high=1.0, high_open=True, doc="decay of the first moment")
    beta2: float = hyper(0.999, low=0.0, high=1.0, high_open=True, doc="decay of the second moment")
    eps: float = hyper(1e-8, low=0.0, doc="added to the denominator for numerical stability")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient (coupled) or decoupled decay")
    momentum_decay: float = hyper(4e-3, low=0.0, doc="ψ of the torch momentum schedule")
    decoupled_weight_decay: bool = hyper(
        False, kind="bool", doc="decoupled decay p ← p(1 − lr·λ) (NAdamW) instead of L2"
    )
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    momentum_schedule: str = convention("torch", choices=MOMENTUM_SCHEDULE, doc="the momentum schedule μ_t")

    def _validate(self) -> None:
        if self.momentum_schedule != "torch" and self.momentum_decay != 4e-3:
            raise UsageError(
                f"{self.name}: momentum_decay={self.momentum_decay!r} is only used by "
                f"momentum_schedule='torch', got momentum_schedule={self.momentum_schedule!r}; "
                "leave momentum_decay at its default"
            )

    def _mu(self, t: int) -> float:
        if self.momentum_schedule == "constant":
            return self.beta1
        psi = self.momentum_decay if self.momentum_schedule == "torch" else 1.0
        return self.beta1 * (1.0 - 0.5 * float(0.96 ** (t * psi)))

    def _init_scalars(self) -> dict[str, Any]:
        return {"step": 0, "mu_product": 1.0}

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        mu, mu_next = self._mu(t), self._mu(t + 1)
        mu_product = state["mu_product"] * mu
        lr = self.lr
        return {
            "step": t,
            "mu_product": mu_product,
            "bc2": self.ops.bias_correction(self.beta2, t),
            "c_grad": lr * (1.0 - mu) / (1.0 - mu_product),
            "c_avg": lr * mu_next / (1.0 - mu_product * mu_next),
            "bc1": self.ops.bias_correction(self.beta1, t),
        }

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        wd = self.weight_decay
        if self.decoupled_weight_decay:
            p = o.decay(p, self.lr, wd)
        else:
            g = o.l2(g, p, wd)
        m = o.ema(s["exp_avg"], g, self.beta1)
        v = o.ema(s["exp_avg_sq"], o.second_moment_input(g, p, wd), self.beta2)
        den = o.sqrt(xp, v / c["bc2"])
        if self.momentum_schedule == "mlcommons":
            m_bar = o.ema(m, g, self.beta1)
            p = o.descend(p, o.div_eps(m_bar, den, self.eps), self.lr / c["bc1"])
            return p, {"exp_avg": m, "exp_avg_sq": v}
        # the Nesterov combination of the current gradient and the updated average
        p = o.descend(p, o.div_eps(g, den, self.eps), c["c_grad"])
        p = o.descend(p, o.div_eps(m, den, self.eps), c["c_avg"])
        return p, {"exp_avg": m, "exp_avg_sq": v}
