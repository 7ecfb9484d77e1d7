"""RMSprop, plain and centered, with momentum."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, convention, hyper

Array = Any

EPS_PLACEMENT = {
    "outside-sqrt": "g/(√v + ε): torch.optim.RMSprop",
    "inside-sqrt": "g/√(v + ε): keras.optimizers.RMSprop, optax.rmsprop (eps_in_sqrt=True, the default), TF1 RMSProp",
}

SQUARE_AVG_INIT = {
    "zeros": "square_avg starts at 0: torch.optim.RMSprop, Keras, optax",
    "ones": "square_avg starts at 1: TF1 tf.train.RMSPropOptimizer, timm RMSpropTF, autograd's rmsprop",
}


@dataclasses.dataclass(frozen=True)
class RMSprop(Rule):
    r"""RMSprop (Tieleman & Hinton, 2012), as ``torch.optim.RMSprop``.

    With g the gradient (−g when ``maximize``):

    * L2: g ← g + weight_decay·p
    * square_avg: v ← alpha·v + (1 − alpha)·g²
    * centered: grad_avg ← alpha·grad_avg + (1 − alpha)·g and w = v − grad_avg², else w = v
    * ``eps_placement="outside-sqrt"`` (torch):              den = √w + eps
    * ``eps_placement="inside-sqrt"`` (Keras, optax, TF1):   den = √(w + eps)
    * momentum > 0: momentum_buffer ← momentum·momentum_buffer + g/den, p ← p − lr·momentum_buffer
      (Keras and TF1 keep lr inside the buffer, which is the same for a constant lr)
    * else: p ← p − lr·g/den

    Defaults are torch's: lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False. State: ``step``, ``square_avg`` (zeros in torch, Keras and optax; ones with
    ``square_avg_init="ones"``, as TF1's RMSProp, timm's ``RMSpropTF`` and autograd's
    ``rmsprop``), with centered ``grad_avg``, with momentum > 0 ``momentum_buffer`` (both start
    at zero).
    """

    name: ClassVar[str] = "rmsprop"
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "square_avg": "second-moment",
        "grad_avg": "first-moment",
        "momentum_buffer": "momentum",
    }

    lr: float = hyper(1e-2, low=0.0, doc="learning rate")
    alpha: float = hyper(0.99, low=0.0, high=1.0, doc="decay of the squared-gradient average")
    eps: float = hyper(1e-8, low=0.0, doc="added to the denominator for numerical stability")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient added to the gradient")
    momentum: float = hyper(0.0, low=0.0, doc="momentum factor of the buffer of normalised steps")
    centered: bool = hyper(
        False, kind="bool", doc="normalise by the variance instead of the raw second moment"
    )
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    square_avg_init: str = convention(
        "zeros", choices=SQUARE_AVG_INIT, doc="the value square_avg starts from"
    )
    eps_placement: str = convention(
        "outside-sqrt", choices=EPS_PLACEMENT, doc="where epsilon enters the denominator"
    )

    def array_keys(self) -> tuple[str, ...]:
        """``square_avg``, then ``grad_avg`` when centered, then ``momentum_buffer`` when momentum > 0."""
        keys = ["square_avg"]
        if self.centered:
            keys.append("grad_avg")
        if self.momentum > 0:
            keys.append("momentum_buffer")
        return tuple(keys)

    def _init_leaf(self, xp: Any, p: Array) -> dict[str, Array]:
        out = super()._init_leaf(xp, p)
        if self.square_avg_init == "ones":
            out["square_avg"] = xp.ones_like(p)
        return out

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        wd = self.weight_decay
        g = o.l2(g, p, wd)
        v = o.ema(s["square_avg"], o.second_moment_input(g, p, wd), self.alpha)
        new = {"square_avg": v}
        w = v
        if self.centered:
            gbar = o.ema(s["grad_avg"], g, self.alpha)
            new["grad_avg"] = gbar
            w = o.variance(v, gbar)
        if self.eps_placement == "outside-sqrt":
            upd = o.div_eps(g, o.sqrt(xp, w), self.eps)
        else:
            upd = o.div_eps(g, o.sqrt(xp, w + self.eps), 0.0)
        if self.momentum > 0:
            upd = o.momentum(s["momentum_buffer"], upd, self.momentum, 0.0)
            new["momentum_buffer"] = upd
        return o.descend(p, upd, self.lr), new
