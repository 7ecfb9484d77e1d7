"""RAdam: Adam with a rectified adaptive learning rate."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, convention, hyper

Array = Any

EPS_PLACEMENT = {
    "hat": "lr·r_t·√bc2·m̂/(√v + ε), ε added before bias correction: torch.optim.RAdam",
    "outside-sqrt": "lr·r_t·m̂/(√v̂ + ε): optax.radam",
}
RECTIFY_WHEN = {
    "rho>5": "rectified step while ρ_t > 5, else un-adapted momentum step: torch.optim.RAdam",
    "rho>=5": "rectified step while ρ_t ≥ 5: optax.radam (threshold=5.0)",
}

UNRECTIFIED = {
    "momentum": "p ← p − lr·m/bc1 while not rectified: torch.optim.RAdam, optax.radam, the original "
    "RAdam with degenerated_to_sgd=True",
    "none": "no update (and no decay) while not rectified: the original RAdam (LiyuanLucasLiu/RAdam) "
    "with degenerated_to_sgd=False",
}


@dataclasses.dataclass(frozen=True)
class RAdam(Rule):
    r"""RAdam (Liu et al., 2020), as ``torch.optim.RAdam``.

    With g the gradient (−g when ``maximize``), t = step + 1, bc1 = 1 − beta1^t,
    bc2 = 1 − beta2^t:

    * coupled L2: g ← g + weight_decay·p; ``decoupled_weight_decay``: p ← p·(1 − lr·weight_decay)
    * exp_avg: m ← beta1·m + (1 − beta1)·g;  exp_avg_sq: v ← beta2·v + (1 − beta2)·g²
    * ρ∞ = 2/(1 − beta2) − 1;  ρ_t = ρ∞ − 2·t·beta2^t/bc2
    * r_t = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t))
    * when rectified (ρ_t > 5 in torch, ρ_t ≥ 5 with ``rectify_when="rho>=5"``):

      * ``eps_placement="hat"`` (torch): p ← p − lr·r_t·(m/bc1)·√bc2/(√v + eps)
      * ``eps_placement="outside-sqrt"`` (optax): p ← p − lr·r_t·(m/bc1)/(√(v/bc2) + eps)

    * otherwise (``unrectified="momentum"``, torch): p ← p − lr·m/bc1; with
      ``unrectified="none"`` (the original's ``degenerated_to_sgd=False``) p is left unchanged

    The audit covers both phases: :meth:`phase_steps` is the first rectified step (6 with the
    default beta2).

    Defaults are torch's: lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    name: ClassVar[str] = "radam"
    array_states: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "exp_avg": "first-moment",
        "exp_avg_sq": "second-moment",
    }
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {"betas": ("beta1", "beta2")}

    lr: float = hyper(1e-3, low=0.0, doc="learning rate")
    beta1: float = hyper(0.9, low=0.0, high=1.0, high_open=True, doc="decay of the first moment")
    beta2: float = hyper(0.999, low=0.0, high=1.0, high_open=True, doc="decay of the second moment")
    eps: float = hyper(1e-8, low=0.0, doc="added to the denominator for numerical stability")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient (coupled) or decoupled decay")
    decoupled_weight_decay: bool = hyper(
        False, kind="bool", doc="decoupled decay p ← p(1 − lr·λ) instead of L2"
    )
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    eps_placement: str = convention("hat", choices=EPS_PLACEMENT, doc="where epsilon enters the denominator")
    rectify_when: str = convention(
        "rho>5", choices=RECTIFY_WHEN, doc="the threshold on ρ_t above which the step is rectified"
    )
    unrectified: str = convention(
        "momentum", choices=UNRECTIFIED, doc="the update while the step is not rectified (ρ_t small)"
    )

    def phase_steps(self) -> int:
        """The first rectified step: where RAdam's update changes form (the audit runs past it)."""
        b2 = self.beta2
        if b2 == 0.0:
            return 0
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        for t in range(1, 200):
            bc2 = 1.0 - b2**t
            rho_t = rho_inf - 2.0 * t * (b2**t) / bc2
            if (rho_t > 5.0) if self.rectify_when == "rho>5" else (rho_t >= 5.0):
                return t
        return 0

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        o = self.ops
        b2 = self.beta2
        bc1, bc2 = o.bias_correction(self.beta1, t), o.bias_correction(b2, t)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * (b2**t) / bc2
        rectified = rho_t > 5.0 if self.rectify_when == "rho>5" else rho_t >= 5.0
        rect = 0.0
        if rectified:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return {"step": t, "bc1": bc1, "bc2": bc2, "rectified": rectified, "rect": rect}

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        lr, wd = self.lr, self.weight_decay
        if self.maximize:
            g = o.neg(g)
        # the original's degenerated_to_sgd=False leaves p untouched in the window, decay included
        frozen = not c["rectified"] and self.unrectified == "none"
        if self.decoupled_weight_decay:
            if not frozen:
                p = o.decay(p, lr, wd)
        else:
            g = o.l2(g, p, wd)
        m = o.ema(s["exp_avg"], g, self.beta1)
        v = o.ema(s["exp_avg_sq"], o.second_moment_input(g, p, wd), self.beta2)
        new = {"exp_avg": m, "exp_avg_sq": v}
        bc1, bc2 = c["bc1"], c["bc2"]
        if not c["rectified"]:
            if frozen:
                return p * 1.0, new
            return o.descend(p, m, lr / bc1), new
        if self.eps_placement == "hat":
            upd = o.div_eps(m, o.sqrt(xp, v), self.eps)
            step_size = lr * c["rect"] * math.sqrt(bc2) / bc1
        else:
            upd = o.div_eps(m, o.sqrt(xp, v / bc2), self.eps)
            step_size = lr * c["rect"] / bc1
        return o.descend(p, upd, step_size), new
