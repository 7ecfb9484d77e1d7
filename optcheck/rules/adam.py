"""Adam, AdamW and AMSGrad."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, convention, hyper

Array = Any

EPS_PLACEMENT = {
    "outside-sqrt": "m̂/(√v̂ + ε): torch.optim.Adam/AdamW, optax.adam (eps_root=0)",
    "inside-sqrt": "m̂/√(v̂ + ε): some course notebooks and TF1-style code",
    "hat": "lr·√bc2/bc1 · m/(√v + ε̂), ε added before bias correction: Keras/TF Adam",
}
AMSGRAD_ON = {
    "raw": "v_max = max(v_max, v), bias-corrected afterwards: torch.optim.Adam, Keras",
    "corrected": "v_max = max(v_max, v̂) on the bias-corrected v: optax.amsgrad",
}


@dataclasses.dataclass(frozen=True)
class Adam(Rule):
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``, with AMSGrad and decoupled decay.

    With g the gradient (−g when ``maximize``), t = step + 1, bc1 = 1 − beta1^t,
    bc2 = 1 − beta2^t:

    * coupled L2 (``decoupled_weight_decay=False``): g ← g + weight_decay·p
    * decoupled (AdamW): p ← p·(1 − lr·weight_decay)
    * exp_avg:    m ← beta1·m + (1 − beta1)·g
    * exp_avg_sq: v ← beta2·v + (1 − beta2)·g²
    * amsgrad:    max_exp_avg_sq ← max(max_exp_avg_sq, v); v is replaced by it below
    * ``eps_placement="outside-sqrt"`` (torch, optax):  p ← p − (lr/bc1)·m / (√v/√bc2 + eps)
    * ``eps_placement="inside-sqrt"``:                   p ← p − (lr/bc1)·m / √(v/bc2 + eps)
    * ``eps_placement="hat"`` (Keras/TF):                 p ← p − (lr·√bc2/bc1)·m / (√v + eps)
    * ``amsgrad_on="corrected"`` (optax): max_exp_avg_sq ← max(max_exp_avg_sq, v/bc2) and the
      denominator is √max_exp_avg_sq + eps.

    Defaults are torch's: lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.
    State: ``step``, ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.
    """

    name: ClassVar[str] = "adam"
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "exp_avg": "first-moment",
        "exp_avg_sq": "second-moment",
        "max_exp_avg_sq": "max-second-moment",
    }

    lr: float = hyper(1e-3, low=0.0, doc="learning rate")
    beta1: float = hyper(0.9, low=0.0, high=1.0, high_open=True, doc="decay of the first moment")
    beta2: float = hyper(0.999, low=0.0, high=1.0, high_open=True, doc="decay of the second moment")
    eps: float = hyper(1e-8, low=0.0, doc="added to the denominator for numerical stability")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient (coupled) or decoupled decay")
    amsgrad: bool = hyper(False, kind="bool", doc="keep the running maximum of the second moment")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    decoupled_weight_decay: bool = hyper(
        False, kind="bool", doc="AdamW's decoupled decay instead of L2 added to the gradient"
    )
    eps_placement: str = convention(
        "outside-sqrt", choices=EPS_PLACEMENT, doc="where epsilon enters the denominator"
    )
    amsgrad_on: str = convention(
        "raw", choices=AMSGRAD_ON, doc="whether AMSGrad's maximum is taken on raw or bias-corrected v"
    )

    def array_keys(self) -> tuple[str, ...]:
        """``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``."""
        base = ("exp_avg", "exp_avg_sq")
        return (*base, "max_exp_avg_sq") if self.amsgrad else base

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        o = self.ops
        return {
            "step": t,
            "bc1": o.bias_correction(self.beta1, t),
            "bc2": o.bias_correction(self.beta2, t),
        }

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        lr, wd, eps = self.lr, self.weight_decay, self.eps
        bc1, bc2 = c["bc1"], c["bc2"]
        if self.maximize:
            g = o.neg(g)
        if self.decoupled_weight_decay:
            p = o.decay(p, lr, wd)
            g_step = g
        else:
            g_step = o.l2(g, p, wd)
        m = o.ema(s["exp_avg"], g_step, self.beta1)
        v = o.ema(s["exp_avg_sq"], o.second_moment_input(g_step, p, wd), self.beta2)
        new = {"exp_avg": m, "exp_avg_sq": v}
        v_used = v
        corrected = False
        if self.amsgrad:
            if self.amsgrad_on == "corrected":
                v_used = xp.maximum(s["max_exp_avg_sq"], v / bc2)
                corrected = True
            else:
                v_used = xp.maximum(s["max_exp_avg_sq"], v)
            new["max_exp_avg_sq"] = v_used
        if corrected:
            den = o.sqrt(xp, v_used)
            upd = o.div_eps(m, den, eps)
            step_size = lr / bc1
        elif self.eps_placement == "outside-sqrt":
            den = o.sqrt(xp, v_used)
            den /= math.sqrt(bc2)
            upd = o.div_eps(m, den, eps)
            step_size = lr / bc1
        elif self.eps_placement == "inside-sqrt":
            den = v_used / bc2
            upd = o.div_eps(m, o.sqrt(xp, den + eps), 0.0)
            step_size = lr / bc1
        else:  # "hat"
            den = o.sqrt(xp, v_used)
            upd = o.div_eps(m, den, eps)
            step_size = lr * math.sqrt(bc2) / bc1
        return o.descend(p, upd, step_size), new


@dataclasses.dataclass(frozen=True)
class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``: Adam with decoupled decay.

    p ← p·(1 − lr·weight_decay), then the Adam step of :class:`Adam` (same conventions).
    Defaults are torch's: lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2.
    """

    name: ClassVar[str] = "adamw"
    weight_decay: float = hyper(1e-2, low=0.0, doc="decoupled decay coefficient (p ← p(1 − lr·λ))")
    decoupled_weight_decay: bool = hyper(
        True, kind="bool", doc="AdamW's decoupled decay (False turns it into Adam with L2)"
    )
