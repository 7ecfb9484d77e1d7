"""Adafactor: factored second moments."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import Rule, convention, hyper

Array = Any

EPS1_PLACEMENT = {
    "clamp": "V̂ = row·col/max(mean(row), eps1), U = g/√max(V̂, eps1²): torch.optim.Adafactor",
    "add": "the averages of g² + eps1, no clamps: Shazeer & Stern (2018) Algorithm 4, transformers, "
    "fairseq and timm Adafactor (eps1 = 1e-30 there)",
}


@dataclasses.dataclass(frozen=True)
class Adafactor(Rule):
    r"""Adafactor (Shazeer & Stern, 2018), as ``torch.optim.Adafactor`` (no first moment).

    With g the gradient (−g when ``maximize``), t = step + 1, RMS(x) = ‖x‖₂/√numel(x),
    eps1 = the dtype's machine epsilon when None:

    * β̂2_t = 1 − t^beta2_decay;  ρ_t = min(lr, 1/√t);  α_t = max(eps2, RMS(p))·ρ_t
      (RMS of the parameter before this step's decay)
    * decoupled decay: p ← p·(1 − lr·weight_decay)
    * parameters with ndim ≥ 2 (factored over the last two axes):
      row_var ← β̂2_t·row_var + (1 − β̂2_t)·mean(g², axis=−1);
      col_var ← β̂2_t·col_var + (1 − β̂2_t)·mean(g², axis=−2);
      V̂ = row_var·col_var / max(mean(row_var, axis=−2), eps1)
    * parameters with ndim < 2: variance ← β̂2_t·variance + (1 − β̂2_t)·g²; V̂ = variance
    * U = g/√max(V̂, eps1²);  p ← p − α_t/max(1, RMS(U)/d)·U
    * ``eps1_placement="add"`` (the paper's Algorithm 4, transformers, fairseq, timm): the
      averages are taken of g² + eps1 instead of g², and V̂ = row_var·col_var/mean(row_var),
      U = g/√V̂, without the clamps (torch's default is ``"clamp"``, above)

    State: ``step`` and three entries that each have the structure of ``params``:
    ``row_var`` (shape ``p.shape[:-1] + (1,)``) and ``col_var`` (shape
    ``p.shape[:-2] + (1, p.shape[-1])``) for parameters with ndim ≥ 2, ``variance`` (the
    shape of ``p``) for the others; an entry that does not apply to a parameter holds
    ``None`` at that parameter's key (torch keeps only the entries that apply).

    torch's tuple ``eps=(eps1, eps2)`` is split (and accepted by :func:`optcheck.rules.get`).
    Empty parameters are left unchanged (torch divides by zero on them).
    Defaults are torch's: lr=1e-2, beta2_decay=−0.8, eps1=None, eps2=1e-3, d=1,
    weight_decay=0.
    """

    name: ClassVar[str] = "adafactor"
    array_states: ClassVar[tuple[str, ...]] = ("row_var", "col_var", "variance")
    state_roles: ClassVar[Mapping[str, str]] = {
        "step": "counter",
        "row_var": "second-moment",
        "col_var": "second-moment",
        "variance": "second-moment",
    }
    tuple_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {"eps": ("eps1", "eps2")}

    lr: float = hyper(1e-2, low=0.0, doc="learning rate (caps the relative step size ρ_t)")
    beta2_decay: float = hyper(-0.8, high=0.0, doc="exponent of the second-moment schedule 1 − t^beta2_decay")
    eps1: float | None = hyper(
        None, kind="optional-float", low=0.0, doc="floor of the second moment (None: the dtype's epsilon)"
    )
    eps2: float = hyper(1e-3, low=0.0, doc="floor of the parameter RMS in the step size")
    d: float = hyper(1.0, low=1.0, doc="clipping threshold of the update's RMS")
    weight_decay: float = hyper(0.0, low=0.0, doc="decoupled decay coefficient (p ← p(1 − lr·λ))")
    maximize: bool = hyper(False, kind="bool", doc="maximise the objective instead")
    eps1_placement: str = convention(
        "clamp", choices=EPS1_PLACEMENT, doc="whether eps1 floors V̂ (torch) or is added to g² (the paper)"
    )

    def _state_leaf_shape(self, key: str, p: Array) -> tuple[int, ...] | None:
        shape = tuple(int(n) for n in p.shape)
        if len(shape) >= 2:
            if key == "row_var":
                return (*shape[:-1], 1)
            if key == "col_var":
                return (*shape[:-2], 1, shape[-1])
            return None
        return shape if key == "variance" else None

    def _init_leaf(self, xp: Any, p: Array) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for key in self.array_states:
            shape = self._state_leaf_shape(key, p)
            out[key] = (
                None if shape is None else xp.zeros(shape, dtype=p.dtype, device=getattr(p, "device", None))
            )
        return out

    def _scalars(self, state: Mapping[str, Any], t: int) -> dict[str, Any]:
        return {
            "step": t,
            "beta2_t": 1.0 - float(t) ** self.beta2_decay,
            "rho": min(self.lr, 1.0 / math.sqrt(t)),
        }

    def _step_leaf(
        self, xp: Any, p: Array, g: Array, s: Mapping[str, Array], c: Mapping[str, Any]
    ) -> tuple[Array, dict[str, Array]]:
        o = self.ops
        if self.maximize:
            g = o.neg(g)
        n = math.prod(int(k) for k in p.shape)
        if n == 0:  # nothing to update (and no mean over an empty axis)
            return p * 1.0, {k: None if v is None else v * 1.0 for k, v in s.items()}
        eps1 = float(xp.finfo(p.dtype).eps) if self.eps1 is None else self.eps1
        beta = c["beta2_t"]
        new: dict[str, Array] = {"row_var": None, "col_var": None, "variance": None}
        alpha = max(self.eps2, _rms(xp, p, n)) * c["rho"]
        p = o.decay(p, self.lr, self.weight_decay)
        sq = o.second_moment_input(g, p, 0.0)
        add = self.eps1_placement == "add"
        if add:
            sq = sq + eps1
        if p.ndim >= 2:
            row = o.ema(s["row_var"], xp.mean(sq, axis=-1, keepdims=True), beta)
            col = o.ema(s["col_var"], xp.mean(sq, axis=-2, keepdims=True), beta)
            new["row_var"], new["col_var"] = row, col
            row_mean = xp.mean(row, axis=-2, keepdims=True)
            if not add:
                row_mean = xp.clip(row_mean, min=eps1)
            v_hat = o.div_eps(row * col, row_mean, 0.0)
        else:
            v_hat = o.ema(s["variance"], sq, beta)
            new["variance"] = v_hat
        u = o.div_eps(g, o.sqrt(xp, v_hat if add else xp.clip(v_hat, min=eps1 * eps1)), 0.0)
        denom = max(1.0, _rms(xp, u, n) / self.d)
        return o.descend(p, u, alpha / denom), new


def _rms(xp: Any, x: Array, n: int) -> float:
    """‖x‖₂/√n as a Python float (0 for an empty array)."""
    if n == 0:
        return 0.0
    return float(xp.linalg.vector_norm(x)) / math.sqrt(n)
