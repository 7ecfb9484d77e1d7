"""Lion: evolved sign momentum."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, hyper

Array = Any


@dataclasses.dataclass(frozen=True)
class Lion(Rule):
    r"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), as ``optax.lion``.

    Not in torch. With g the gradient (−g when ``maximize``):

    * c = beta1·exp_avg + (1 − beta1)·g
    * p ← p − lr·(sign(c) + weight_decay·p)   (decoupled decay, scaled by lr)
    * exp_avg ← beta2·exp_avg + (1 − beta2)·g

    Every coordinate moves by exactly lr (plus the decay term), or not at all where c = 0.

    Defaults are the paper's and optax's: lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.
    State: ``step``, ``exp_avg`` (starts at zero).
    """

    name: ClassVar[str] = "lion"
    array_states: ClassVar[tuple[str, ...]] = ("exp_avg",)
    state_roles: ClassVar[Mapping[str, str]] = {"step": "counter", "exp_avg": "momentum"}
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {"betas": ("beta1", "beta2")}

    lr: float = hyper(1e-4, low=0.0, doc="learning rate (the size of every coordinate's move)")
    beta1: float = hyper(0.9, low=0.0, high=1.0, high_open=True, doc="interpolation of the update direction")
    beta2: float = hyper(0.99, low=0.0, high=1.0, high_open=True, doc="decay of the momentum")
    weight_decay: float = hyper(0.0, low=0.0, doc="decoupled decay coefficient (p ← p − lr·λ·p)")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        direction = o.sign(xp, o.ema(s["exp_avg"], g, self.beta1))
        p = o.descend(o.decay(p, self.lr, self.weight_decay), direction, self.lr)
        return p, {"exp_avg": o.ema(s["exp_avg"], g, self.beta2)}
