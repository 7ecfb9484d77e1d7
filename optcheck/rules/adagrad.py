"""Adagrad."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, convention, hyper

Array = Any

EPS_PLACEMENT = {
    "outside-sqrt": "g/(√sum + ε): torch.optim.Adagrad",
    "inside-sqrt": "g/√(sum + ε): keras.optimizers.Adagrad, optax.adagrad (initial_accumulator_value 0.1 there)",
}


@dataclasses.dataclass(frozen=True)
class Adagrad(Rule):
    r"""Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``.

    With g the gradient (−g when ``maximize``) and t = step + 1:

    * L2: g ← g + weight_decay·p
    * sum ← sum + g², starting from sum = initial_accumulator_value
    * clr = lr / (1 + (t − 1)·lr_decay)
    * ``eps_placement="outside-sqrt"`` (torch):        p ← p − clr·g / (√sum + eps)
    * ``eps_placement="inside-sqrt"`` (Keras, optax):  p ← p − clr·g / √(sum + eps)

    The initial accumulator is a hyperparameter because libraries differ: 0 in torch, 0.1
    in optax and Keras (``initial_accumulator_value=0.1``).

    Defaults are torch's: lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10. State: ``step``, ``sum`` (never decreases).
    """

    name: ClassVar[str] = "adagrad"
    array_states: ClassVar[tuple[str, ...]] = ("sum",)
    state_roles: ClassVar[Mapping[str, str]] = {"step": "counter", "sum": "accumulator"}

    lr: float = hyper(1e-2, low=0.0, doc="learning rate")
    lr_decay: float = hyper(0.0, low=0.0, doc="learning-rate decay: clr = lr/(1 + (t−1)·lr_decay)")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient added to the gradient")
    initial_accumulator_value: float = hyper(0.0, low=0.0, doc="the value sum starts from")
    eps: float = hyper(1e-10, low=0.0, doc="added to the denominator for numerical stability")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    eps_placement: str = convention(
        "outside-sqrt", choices=EPS_PLACEMENT, doc="where epsilon enters the denominator"
    )

    def _init_leaf(self, xp: Any, p: Array) -> dict[str, Array]:
        return {"sum": xp.full_like(p, self.initial_accumulator_value)}

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        return {"step": t, "clr": self.lr / (1.0 + (t - 1) * self.lr_decay)}

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        wd = self.weight_decay
        g = o.l2(g, p, wd)
        acc = o.accumulate(s["sum"], o.second_moment_input(g, p, wd))
        if self.eps_placement == "outside-sqrt":
            upd = o.div_eps(g, o.sqrt(xp, acc), self.eps)
        else:
            upd = o.div_eps(g, o.sqrt(xp, acc + self.eps), 0.0)
        return o.descend(p, upd, c["clr"]), {"sum": acc}
