"""Adam, AdamW and AMSGrad."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from .._core.errors import UsageError
from ._base import Rule, convention, hyper

Array = Any

EPS_PLACEMENT = {
    "outside-sqrt": "m̂/(√v̂ + ε): torch.optim.Adam/AdamW, optax.adam (eps_root=0)",
    "inside-sqrt": "m̂/√(v̂ + ε): optax.adam(eps=0, eps_root=ε), many from-scratch course implementations",
    "hat": "lr·√bc2/bc1 · m/(√v + ε̂), ε added before bias correction: Keras/TF Adam",
}
DECAY_WHEN = {
    "before-step": "p ← p·(1 − lr·λ), then the Adam step: torch.optim.AdamW, optax.adamw, fairseq Adam",
    "after-step": "the Adam step, then p ← p·(1 − lr·λ) on the new parameters: transformers.AdamW (v4)",
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
    * decoupled (AdamW): p ← p·(1 − lr·weight_decay), before the step (``decay_when="before-step"``,
      torch) or on the parameters after it (``"after-step"``, transformers' ``AdamW``)
    * exp_avg:    m ← beta1·m + (1 − beta1)·g
    * exp_avg_sq: v ← beta2·v + (1 − beta2)·g²
    * amsgrad:    max_exp_avg_sq ← max(max_exp_avg_sq, v); v is replaced by it below
    * ``eps_placement="outside-sqrt"`` (torch, optax):  p ← p − (lr/bc1)·m / (√(v/bc2) + eps)
    * ``eps_placement="inside-sqrt"``:                   p ← p − (lr/bc1)·m / √(v/bc2 + eps)
    * ``eps_placement="hat"`` (Keras/TF):                 p ← p − (lr·√bc2/bc1)·m / (√v + eps)
    * ``amsgrad_on="corrected"`` (optax): max_exp_avg_sq ← max(max_exp_avg_sq, v/bc2), already
      bias-corrected, so the denominator is √max_exp_avg_sq + eps (or √(max_exp_avg_sq + eps)
      with ``eps_placement="inside-sqrt"``; ``"hat"`` does not apply).

    Defaults are torch's: lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.
    State: ``step``, ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.

    Examples:
        >>> import numpy as np, optcheck
        >>> rule = optcheck.rules.get("adam", lr=0.1)
        >>> p, s = rule.step(np.array([1.0]), np.array([0.5]), rule.init(np.array([1.0])))
        >>> p  # the first Adam step moves each coordinate by lr (up to eps)
        array([0.9])
    """

    name: ClassVar[str] = "adam"
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "exp_avg": "first-moment",
        "exp_avg_sq": "second-moment",
        "max_exp_avg_sq": "max-second-moment",
    }
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {"betas": ("beta1", "beta2")}

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
    decay_when: str = convention(
        "before-step", choices=DECAY_WHEN, doc="whether decoupled decay applies before or after the step"
    )

    def _validate(self) -> None:
        if self.amsgrad and self.amsgrad_on == "corrected" and self.eps_placement == "hat":
            raise UsageError(
                f"{self.name}: amsgrad_on='corrected' keeps the maximum of the bias-corrected v, so "
                "eps_placement='hat' (epsilon added before bias correction) does not apply; use "
                "'outside-sqrt' (optax.amsgrad) or 'inside-sqrt'"
            )

    def array_keys(self) -> tuple[str, ...]:
        """``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``."""
        base = ("exp_avg", "exp_avg_sq")
        return (*base, "max_exp_avg_sq") if self.amsgrad else base

    def update_bound(self, t: int) -> tuple[float, float] | None:
        """``|Δp| <= lr·(1−β1)·√bc2·√(Σ_{k<t} (β1²/β2)^k) / (bc1·√(1−β2))`` (+ lr·weight_decay·|p| when decoupled; times max(1, |1 − lr·weight_decay|) when the decay comes after the step).

        By Cauchy–Schwarz on m and v built from zero: |m|/√v <= (1−β1)·√(Σ_k (β1²/β2)^k)/√(1−β2);
        it is exactly lr at t = 1 and about 7.3·lr at most with the defaults. Epsilon, AMSGrad's
        maximum and every ``eps_placement`` only shrink the step. ``None`` when beta2 = 0.
        """
        if self.beta2 == 0.0 or t < 1:
            return None
        gamma = self.beta1**2 / self.beta2
        try:
            series = float(t) if gamma == 1.0 else (1.0 - gamma**t) / (1.0 - gamma)
        except OverflowError:  # gamma > 1 and t large: no finite bound
            return None
        bc1, bc2 = 1.0 - self.beta1**t, 1.0 - self.beta2**t
        if bc1 <= 0.0 or not math.isfinite(series):
            return None
        a = self.lr * (1.0 - self.beta1) * math.sqrt(bc2 * series) / (bc1 * math.sqrt(1.0 - self.beta2))
        b = self.lr * self.weight_decay if self.decoupled_weight_decay else 0.0
        if self.decoupled_weight_decay and self.decay_when == "after-step":
            # p ← (p − s)·(1 − lr·λ): the step s is scaled by 1 − lr·λ as well
            a *= max(1.0, abs(1.0 - b))
        return a, b

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
        after = self.decoupled_weight_decay and self.decay_when == "after-step"
        if self.decoupled_weight_decay:
            if not after:
                p = o.decay(p, lr, wd)
            g_step = g
        else:
            g_step = o.l2(g, p, wd)
        m = o.ema(s["exp_avg"], g_step, self.beta1)
        v = o.ema(s["exp_avg_sq"], o.second_moment_input(g_step, p, wd), self.beta2)
        new = {"exp_avg": m, "exp_avg_sq": v}
        corrected = self.amsgrad and self.amsgrad_on == "corrected"
        if corrected:
            v_used = o.maximum(xp, s["max_exp_avg_sq"], v / bc2)
            new["max_exp_avg_sq"] = v_used
        elif self.amsgrad:
            v_used = o.maximum(xp, s["max_exp_avg_sq"], v)
            new["max_exp_avg_sq"] = v_used
        else:
            v_used = v
        # the temporaries are not bound to names, so that at most two are alive at once
        if self.eps_placement == "hat":
            upd = o.div_eps(m, o.sqrt(xp, v_used), eps)
            step_size = lr * math.sqrt(bc2) / bc1
        elif self.eps_placement == "outside-sqrt":
            upd = o.div_eps(m, o.sqrt(xp, v_used if corrected else v_used / bc2), eps)
            step_size = lr / bc1
        else:  # "inside-sqrt"
            upd = o.div_eps(m, o.sqrt(xp, (v_used if corrected else v_used / bc2) + eps), 0.0)
            step_size = lr / bc1
        if after:
            return o.decay(o.descend(p, upd, step_size), lr, wd), new
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
