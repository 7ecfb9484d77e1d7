"""Stochastic gradient descent, with the three momentum forms in use."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from .._core.errors import UsageError
from ._base import Rule, convention, hyper

Array = Any

MOMENTUM_FORM = {
    "torch": "buf ← μ·buf + (1 − τ)·g (first step buf = g), p ← p − lr·buf: torch.optim.SGD, optax.sgd (trace)",
    "ema": "v ← β·v + (1 − β)·g from v = 0, p ← p − lr·v: deep-learning course notebooks (momentum=β)",
    "velocity": "v ← μ·v − lr·g, p ← p + v: keras.optimizers.SGD, cs231n, Sutskever et al. (2013)",
}

WEIGHT_DECAY_FORM = {
    "l2": "g ← g + λ·p: torch.optim.SGD, optax (add_decayed_weights before sgd)",
    "decoupled": "p ← p·(1 − lr·λ) before the step, on the raw g: timm SGDW",
}


@dataclasses.dataclass(frozen=True)
class SGD(Rule):
    r"""Stochastic gradient descent, as ``torch.optim.SGD``, with momentum, dampening and Nesterov.

    With g the gradient (−g when ``maximize``), μ = momentum, τ = dampening:

    * L2: g ← g + weight_decay·p; with ``weight_decay_form="decoupled"`` (timm ``SGDW``)
      instead p ← p·(1 − lr·weight_decay) before the step, on the raw g
    * momentum = 0: p ← p − lr·g
    * ``momentum_form="torch"`` (torch, optax): momentum_buffer ← g on the first step
      (step == 0 before it, no dampening), else momentum_buffer ← μ·momentum_buffer + (1 − τ)·g;
      d = g + μ·momentum_buffer with ``nesterov``, else d = momentum_buffer; p ← p − lr·d
    * ``momentum_form="ema"`` (the course form): momentum_buffer ← μ·momentum_buffer + (1 − μ)·g
      from momentum_buffer = 0 (no first-step special case), p ← p − lr·momentum_buffer;
      needs μ < 1; no dampening, no Nesterov
    * ``momentum_form="velocity"`` (Keras, cs231n): momentum_buffer ← μ·momentum_buffer − lr·g;
      p ← p + momentum_buffer, or with ``nesterov`` p ← p + μ·momentum_buffer − lr·g; no dampening

    For a constant lr the velocity form equals the torch form with velocity = −lr·buf; the
    ema form equals the torch form with lr scaled by (1 − μ), except on the first step.

    Defaults are torch's: lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False.
    State: ``step`` and, with momentum ≠ 0, ``momentum_buffer``.
    """

    name: ClassVar[str] = "sgd"
    state_roles: ClassVar[Mapping[str, str]] = {"step": "counter", "momentum_buffer": "momentum"}

    lr: float = hyper(1e-3, low=0.0, doc="learning rate")
    momentum: float = hyper(0.0, low=0.0, doc="momentum factor μ (β of the ema form)")
    dampening: float = hyper(0.0, low=0.0, high=1.0, doc="dampening τ of the momentum buffer (torch form)")
    weight_decay: float = hyper(0.0, low=0.0, doc="L2 coefficient added to the gradient")
    nesterov: bool = hyper(False, kind="bool", doc="Nesterov's look-ahead momentum")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    weight_decay_form: str = convention(
        "l2", choices=WEIGHT_DECAY_FORM, doc="L2 added to the gradient, or decoupled decay"
    )
    momentum_form: str = convention(
        "torch", choices=MOMENTUM_FORM, doc="how the momentum buffer is built and applied"
    )

    def _validate(self) -> None:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise UsageError(
                f"{self.name}: nesterov=True needs momentum > 0 and dampening=0, got "
                f"momentum={self.momentum!r}, dampening={self.dampening!r}"
            )
        if self.momentum_form != "torch" and self.dampening != 0:
            raise UsageError(
                f"{self.name}: dampening={self.dampening!r} only applies to momentum_form='torch', "
                f"got momentum_form={self.momentum_form!r}; expected dampening=0"
            )
        if self.momentum_form == "ema":
            if self.momentum >= 1:
                raise UsageError(
                    f"{self.name}: momentum={self.momentum!r} is out of range for momentum_form='ema'; "
                    "expected a value in [0, 1)"
                )
            if self.nesterov:
                raise UsageError(
                    f"{self.name}: nesterov=True is not defined for momentum_form='ema'; use "
                    "momentum_form='torch' or 'velocity'"
                )

    def array_keys(self) -> tuple[str, ...]:
        """``momentum_buffer`` when momentum ≠ 0, else nothing."""
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        lr, mu = self.lr, self.momentum
        if self.maximize:
            g = o.neg(g)
        if self.weight_decay_form == "decoupled":
            p = o.decay(p, lr, self.weight_decay)
        else:
            g = o.l2(g, p, self.weight_decay)
        if mu == 0:
            return o.descend(p, g, lr), {}
        if self.momentum_form == "torch":
            if c["step"] == 1:
                buf = o.momentum_init(g, self.dampening)
            else:
                buf = o.momentum(s["momentum_buffer"], g, mu, self.dampening)
            d = o.nesterov(g, buf, mu) if self.nesterov else buf
            return o.descend(p, d, lr), {"momentum_buffer": buf}
        if self.momentum_form == "ema":
            buf = o.ema(s["momentum_buffer"], g, mu)
            return o.descend(p, buf, lr), {"momentum_buffer": buf}
        # "velocity": v ← μ·v − lr·g, written as μ·v + 1·(−lr·g) through the momentum hook
        buf = o.momentum(s["momentum_buffer"], g * (-lr), mu, 0.0)
        if self.nesterov:
            # p + μ·v − lr·g = p − 1·(lr·g + μ·(−v))
            return o.descend(p, o.nesterov(g * lr, o.neg(buf), mu), 1.0), {"momentum_buffer": buf}
        return o.descend(p, o.neg(buf), 1.0), {"momentum_buffer": buf}
