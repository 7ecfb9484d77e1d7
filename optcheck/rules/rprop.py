"""Rprop: resilient backpropagation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from .._core.errors import UsageError
from ._base import Rule, hyper

Array = Any


@dataclasses.dataclass(frozen=True)
class Rprop(Rule):
    r"""Rprop (Riedmiller & Braun, 1993), as ``torch.optim.Rprop`` (the iRprop− variant).

    With g the gradient (−g when ``maximize``) and s = sign(g·prev):

    * step_size ← clip(step_size·f, step_size_min, step_size_max) with f = etaplus where s > 0,
      etaminus where s < 0, 1 where s = 0
    * where s < 0: g ← 0 (the sign flipped: skip this coordinate once)
    * p ← p − sign(g)·step_size
    * prev ← g

    torch's tuples are split: ``etas=(etaminus, etaplus)``, ``step_sizes=(step_size_min,
    step_size_max)`` (both tuples are also accepted by :func:`optcheck.rules.get`).

    Defaults are torch's: lr=1e-2 (the first step size), etaminus=0.5, etaplus=1.2,
    step_size_min=1e-6, step_size_max=50. State: ``step``, ``prev`` (starts at zero),
    ``step_size`` (starts at lr).
    """

    name: ClassVar[str] = "rprop"
    array_states: ClassVar[tuple[str, ...]] = ("prev", "step_size")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "prev": "previous-gradient",
        "step_size": "step-size",
    }
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "etas": ("etaminus", "etaplus"),
        "step_sizes": ("step_size_min", "step_size_max"),
    }

    lr: float = hyper(1e-2, low=0.0, doc="the initial step size of every coordinate")
    etaminus: float = hyper(0.5, low=0.0, high=1.0, low_open=True, high_open=True, doc="shrink factor")
    etaplus: float = hyper(1.2, low=1.0, low_open=True, doc="growth factor")
    step_size_min: float = hyper(1e-6, low=0.0, doc="smallest step size")
    step_size_max: float = hyper(50.0, low=0.0, doc="largest step size")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")

    def _validate(self) -> None:
        if self.step_size_min > self.step_size_max:
            raise UsageError(
                f"{self.name}: step_size_min={self.step_size_min!r} is larger than "
                f"step_size_max={self.step_size_max!r}; expected step_size_min <= step_size_max"
            )

    def _init_leaf(self, xp: Any, p: Array) -> dict[str, Array]:
        return {"prev": xp.zeros_like(p), "step_size": xp.full_like(p, self.lr)}

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        sgn = o.sign(xp, g * s["prev"])
        flipped = sgn < 0

        def const(x: float) -> Array:  # a 0-d array of the parameter's dtype (broadcast, not filled)
            return xp.asarray(x, dtype=sgn.dtype, device=getattr(sgn, "device", None))

        # NaN stays NaN (torch leaves it in place), so a NaN gradient poisons its step size
        factor = xp.where(
            sgn > 0,
            const(self.etaplus),
            xp.where(flipped, const(self.etaminus), xp.where(sgn == 0, const(1.0), sgn)),
        )
        step_size = xp.clip(s["step_size"] * factor, self.step_size_min, self.step_size_max)
        g = xp.where(flipped, const(0.0), g)
        p = o.descend(p, o.sign(xp, g) * step_size, 1.0)
        return p, {"prev": g, "step_size": step_size}
