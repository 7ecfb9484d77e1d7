"""Adadelta."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, hyper

Array = Any


@dataclasses.dataclass(frozen=True)
class Adadelta(Rule):
    r"""Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``.

    With g the gradient (−g when ``maximize``); every library puts eps inside both roots:

    * L2: g ← g + weight_decay·p
    * square_avg: v ← rho·v + (1 − rho)·g²
    * Δ = √(acc_delta + eps) / √(v + eps) · g
    * acc_delta ← rho·acc_delta + (1 − rho)·Δ²
    * p ← p − lr·Δ

    Defaults are torch's: lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.
    State: ``step``, ``square_avg``, ``acc_delta`` (both start at zero, both never negative).
    """

    name: ClassVar[str] = "adadelta"
    array_states: ClassVar[tuple[str, ...]] = ("square_avg", "acc_delta")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "square_avg": "second-moment",
        "acc_delta": "second-moment",
    }

    lr: float = hyper(1.0, low=0.0, doc="learning rate (scales Δ)")
    rho: float = hyper(0.9, low=0.0, high=1.0, doc="decay of both running averages")
    eps: float = hyper(1e-6, low=0.0, doc="added inside both square roots")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient added to the gradient")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        wd, rho, eps = self.weight_decay, self.rho, self.eps
        g = o.l2(g, p, wd)
        v = o.ema(s["square_avg"], o.second_moment_input(g, p, wd), rho)
        ratio = o.div_eps(o.sqrt(xp, s["acc_delta"] + eps), o.sqrt(xp, v + eps), 0.0)
        delta = ratio * g
        u = o.ema(s["acc_delta"], o.square(delta), rho)
        return o.descend(p, delta, self.lr), {"square_avg": v, "acc_delta": u}
