"""Adamax."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, convention, hyper

Array = Any

EPS_PLACEMENT = {
    "inside-max": "u ← max(β2·u, |g| + ε), p ← p − (lr/bc1)·m/u: torch.optim.Adamax, Keras, optax.adamax",
    "outside-max": "u ← max(β2·u, |g|), p ← p − (lr/bc1)·m/(u + ε): jax.example_libraries.optimizers.adamax",
}


@dataclasses.dataclass(frozen=True)
class Adamax(Rule):
    r"""Adamax (Kingma & Ba, 2015, section 7), as ``torch.optim.Adamax``.

    With g the gradient (−g when ``maximize``), t = step + 1, bc1 = 1 − beta1^t:

    * L2: g ← g + weight_decay·p
    * exp_avg: m ← beta1·m + (1 − beta1)·g
    * ``eps_placement="inside-max"`` (torch, Keras, optax): u ← max(beta2·u, |g| + eps);
      p ← p − (lr/bc1)·m/u
    * ``eps_placement="outside-max"`` (jax ``example_libraries``): u ← max(beta2·u, |g|);
      p ← p − (lr/bc1)·m/(u + eps)

    Defaults are torch's: lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.
    State: ``step``, ``exp_avg``, ``exp_inf`` (never negative; it decays, so it may decrease).
    """

    name: ClassVar[str] = "adamax"
    array_states: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_inf")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "exp_avg": "first-moment",
        "exp_inf": "norm",
    }
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {"betas": ("beta1", "beta2")}

    lr: float = hyper(2e-3, low=0.0, doc="learning rate")
    beta1: float = hyper(0.9, low=0.0, high=1.0, high_open=True, doc="decay of the first moment")
    beta2: float = hyper(0.999, low=0.0, high=1.0, high_open=True, doc="decay of the infinity norm")
    eps: float = hyper(1e-8, low=0.0, doc="added to |g| inside the max")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient added to the gradient")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    eps_placement: str = convention(
        "inside-max", choices=EPS_PLACEMENT, doc="whether epsilon enters the max or the denominator"
    )

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        return {"step": t, "bc1": self.ops.bias_correction(self.beta1, t)}

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        g = o.l2(g, p, self.weight_decay)
        m = o.ema(s["exp_avg"], g, self.beta1)
        if self.eps_placement == "inside-max":
            u = o.inf_norm(xp, s["exp_inf"], g, self.beta2, self.eps)
            upd = o.div_eps(m, u, 0.0)
        else:
            u = o.inf_norm(xp, s["exp_inf"], g, self.beta2, 0.0)
            upd = o.div_eps(m, u, self.eps)
        return o.descend(p, upd, self.lr / c["bc1"]), {"exp_avg": m, "exp_inf": u}
