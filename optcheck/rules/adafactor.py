"""Adafactor: factored second moments."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ._base import CHUNK_BYTES, Rule, _assign_all, convention, empty_like_all, hyper

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
    elementwise: ClassVar[bool] = False  # RMS(p), RMS(U) and the factored means span the array
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
        n = math.prod(int(k) for k in p.shape)
        if n == 0:  # nothing to update (and no mean over an empty axis)
            return p * 1.0, {k: None if v is None else v * 1.0 for k, v in s.items()}
        return self._passes(xp, p, g, s, c, None, None)

    def _leaf(
        self, xp: Any, p: Array, g: Array, s: dict[str, Array], c: Mapping[str, Any], in_place: bool
    ) -> tuple[Array, dict[str, Array]]:
        """Large contiguous numpy vectors and matrices go block by block (rows of a matrix), in passes."""
        rows = _block_rows(p, g, s)
        if not rows:
            return super()._leaf(xp, p, g, s, c, in_place)
        if in_place:
            out_p, out_s = p, s
        else:
            out_p, *rest = empty_like_all([p, *s.values()])
            out_s = dict(zip(s, rest, strict=True))
        self._passes(np, p, g, s, c, rows, (out_p, out_s))
        return out_p, out_s

    def _passes(
        self,
        xp: Any,
        p: Array,
        g: Array,
        s: Mapping[str, Array],
        c: Mapping[str, Any],
        rows: int | None,
        out: tuple[Array, dict[str, Array]] | None,
    ) -> tuple[Array, dict[str, Array]]:
        """The step in three passes over the array, each either whole (``rows=None``) or by blocks.

        Pass 1 updates the second moment (the row and column averages of g², or the
        variance); pass 2 forms U and its RMS; pass 3 moves the parameters. By blocks of
        ``rows`` leading entries (rows of a matrix), U is formed again in pass 3 instead of
        kept, and each result is written into ``out`` as soon as it is complete, so no
        parameter-sized temporary is held; the reductions (the column means, RMS(U)) are
        then sums of per-block sums. Every write goes to a block that no later pass reads
        in its old value.
        """
        o = self.ops
        n = math.prod(int(k) for k in p.shape)
        eps1 = float(xp.finfo(p.dtype).eps) if self.eps1 is None else self.eps1
        beta = c["beta2_t"]
        alpha = max(self.eps2, _rms(xp, p, n)) * c["rho"]  # before anything is written
        size = int(p.shape[0]) if rows is not None else 1
        blocks: list[Any] = [...] if rows is None else [slice(i, i + rows) for i in range(0, size, rows)]
        factored = p.ndim >= 2
        add = self.eps1_placement == "add"  # the paper's g² + eps1, no floors
        new: dict[str, Array] = {"row_var": None, "col_var": None, "variance": None}

        def grad(b: Any) -> Array:
            return o.neg(g[b]) if self.maximize else g[b]

        def put(key: str, b: Any, value: Array) -> Array:
            if out is None:
                new[key] = value
                return value
            dst = out[0] if key == "params" else out[1][key]
            _assign_all(self.name, [(dst[b], value)])
            return dst[b]

        # pass 1: the second moment
        if factored:
            col_sum: Array = None
            for b in blocks:
                sq = o.second_moment_input(grad(b), p[b], 0.0)
                if add:
                    sq = sq + eps1
                put("row_var", b, o.ema(s["row_var"][b], xp.mean(sq, axis=-1, keepdims=True), beta))
                part = xp.sum(sq, axis=-2, keepdims=True)
                col_sum = part if col_sum is None else col_sum + part
            col_mean = col_sum / int(p.shape[-2])
            col = put("col_var", ..., o.ema(s["col_var"], col_mean, beta))
            row = new["row_var"] if out is None else out[1]["row_var"]
            row_mean = xp.mean(row, axis=-2, keepdims=True)
            if not add:
                row_mean = xp.clip(row_mean, min=eps1)

            def v_hat(b: Any) -> Array:
                return o.div_eps(row[b] * col, row_mean, 0.0)

        else:
            for b in blocks:
                sq = o.second_moment_input(grad(b), p[b], 0.0)
                if add:
                    sq = sq + eps1
                put("variance", b, o.ema(s["variance"][b], sq, beta))
            var = new["variance"] if out is None else out[1]["variance"]

            def v_hat(b: Any) -> Array:
                return var[b]

        def update(b: Any) -> Array:
            vb = v_hat(b)
            return o.div_eps(grad(b), o.sqrt(xp, vb if add else xp.clip(vb, min=eps1 * eps1)), 0.0)

        # pass 2: U and its RMS
        if rows is None:
            u = update(blocks[0])
            rms_u = _rms(xp, u, n)
        else:
            total = 0.0
            for b in blocks:
                total += _sumsq(xp, update(b))
            rms_u = math.sqrt(total) / math.sqrt(n)
        step_size = alpha / max(1.0, rms_u / self.d)
        # pass 3: the parameters
        for b in blocks:
            ub = u if rows is None else update(b)
            put("params", b, o.descend(o.decay(p[b], self.lr, self.weight_decay), ub, step_size))
        if out is None:
            return new.pop("params"), new
        return out


def _block_rows(p: Any, g: Any, s: Mapping[str, Any]) -> int:
    """Leading entries (rows of a matrix) per block for a large contiguous numpy vector or matrix, else 0."""
    if type(p) is not np.ndarray or type(g) is not np.ndarray or p.ndim not in (1, 2):
        return 0
    if p.nbytes < 2 * CHUNK_BYTES or not (p.flags.c_contiguous and g.flags.c_contiguous):
        return 0
    for v in s.values():
        if v is not None and (type(v) is not np.ndarray or not v.flags.c_contiguous):
            return 0
    row_bytes = p.itemsize * (int(p.shape[-1]) if p.ndim == 2 else 1)
    return max(1, CHUNK_BYTES // row_bytes)


def _sumsq(xp: Any, x: Array) -> float:
    """Σx² as a Python float: a dot product, so no temporary the size of ``x``.

    ``np.dot`` and the array API's ``vecdot`` give the same bits on numpy and
    ``array_api_strict`` (both reach the same BLAS dot).
    """
    if isinstance(x, np.ndarray):
        v = x.reshape(-1)
        return float(np.dot(v, v))
    v = xp.reshape(x, (-1,))
    return float(xp.vecdot(v, v))


def _rms(xp: Any, x: Array, n: int) -> float:
    """‖x‖₂/√n as a Python float (0 for an empty array)."""
    if n == 0:
        return 0.0
    return math.sqrt(_sumsq(xp, x)) / math.sqrt(n)
