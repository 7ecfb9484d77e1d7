"""ASGD: averaged stochastic gradient descent."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, hyper

Array = Any


@dataclasses.dataclass(frozen=True)
class ASGD(Rule):
    r"""Averaged SGD (Polyak & Juditsky, 1992; Bottou, 2012), as ``torch.optim.ASGD``.

    With g the gradient (−g when ``maximize``), t = step + 1, and eta, mu the values kept in
    the state from the previous step (eta starts at lr, mu at 1):

    * L2: g ← g + weight_decay·p
    * p ← p·(1 − lambd·eta) − eta·g
    * ax ← ax + mu·(p − ax)   (ax ← p while mu = 1)
    * eta ← lr / (1 + lambd·lr·t)^alpha;  mu ← 1 / max(1, t − t0)

    The parameters follow SGD with a decaying step; ``ax`` is their running average from
    step t0 on (the averaged iterate that ASGD returns as its answer).

    Defaults are torch's: lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.
    State: ``step``, ``eta``, ``mu`` (numbers) and ``ax`` (starts at zero).
    """

    name: ClassVar[str] = "asgd"
    array_states: ClassVar[tuple[str, ...]] = ("ax",)
    scalar_states: ClassVar[tuple[str, ...]] = ("step", "eta", "mu")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "eta": "schedule",
        "mu": "schedule",
        "ax": "average",
    }

    lr: float = hyper(1e-2, low=0.0, doc="learning rate (the first eta)")
    lambd: float = hyper(1e-4, low=0.0, doc="decay term λ (shrinks p and slows eta's schedule)")
    alpha: float = hyper(0.75, low=0.0, doc="power of eta's decay")
    t0: float = hyper(1e6, low=0.0, doc="the step from which averaging starts")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient added to the gradient")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")

    def _init_scalars(self) -> dict[str, Any]:
        return {"step": 0, "eta": self.lr, "mu": 1.0}

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        try:
            eta = self.lr / ((1.0 + self.lambd * self.lr * t) ** self.alpha)
        except OverflowError:  # the denominator is beyond floats: eta has decayed to 0
            eta = 0.0
        return {
            "step": t,
            "eta_used": state["eta"],
            "mu_used": state["mu"],
            "eta": eta,
            "mu": 1.0 / max(1.0, t - self.t0),
        }

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        g = o.l2(g, p, self.weight_decay)
        eta, mu = c["eta_used"], c["mu_used"]
        p = o.descend(o.decay(p, eta, self.lambd), g, eta)
        ax = p * 1.0 if mu == 1 else o.ema(s["ax"], p, 1.0 - mu)
        return p, {"ax": ax}
