"""The guard's shadow check: the reference rule recomputed on sampled coordinates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core.arrays import shape as _shape
from .._core.message import count_first, fmt_number, related_text
from ..invariants import (
    Context,
    Leaf,
    Violation,
)
from ..rules import naming
from ._sampling import _gather


def shadow_check(self: Any, ctx: Context, leaves: list[Leaf], step: int | None) -> list[Violation]:
    from .._compare import mismatches, to_numpy

    out: list[Violation] = []
    assert self.rule is not None
    t0 = (step - 1) if step is not None else self.steps - 1
    for leaf in leaves:
        rule = ctx.rule_for(leaf.path) or self.rule
        if leaf.p0 is None or leaf.p1 is None or leaf.g is None or leaf.skip_elementwise:
            continue
        keys = rule.array_keys()
        if any(k not in leaf.s0 or _shape(leaf.s0[k]) != _shape(leaf.p0) for k in keys):
            continue  # a state entry the user does not keep, or factored (adafactor)
        n = math.prod(_shape(leaf.p0))
        if leaf.sample is None and n > self.shadow_sample:
            idx = np.unique(self._shadow_rng.integers(0, n, self.shadow_sample))
        else:
            idx = None
        cache: dict[Any, Any] = {}

        def pick(x: Any, idx: np.ndarray | None = idx, cache: dict[Any, Any] = cache) -> np.ndarray:
            a = x if idx is None else _gather(x, idx, cache)
            return to_numpy(a).reshape(-1)

        p0, p1, g = pick(leaf.p0), pick(leaf.p1), pick(leaf.g)
        s0 = {k: pick(leaf.s0[k]) for k in keys}
        s1 = {k: pick(leaf.s1[k]) for k in keys if k in leaf.s1}
        state: dict[str, Any] = {"step": t0, **s0}
        extra = [k for k in rule.scalar_states if k != "step"]
        if extra:
            tracker = self._tracker_before
            for k in extra:
                if k in leaf.s0:
                    state[k] = leaf.s0[k]
                elif k in tracker:
                    state[k] = tracker[k]
                else:
                    break
            else:
                extra = []
            if extra:
                continue
        try:
            with np.errstate(all="ignore"):
                ref_p, ref_s = rule.step(p0, g, state)
        except (ValueError, TypeError, ZeroDivisionError, FloatingPointError):
            continue
        # one tolerance (optcheck._compare), as the audit judges: the parameters by their change
        where_bad = [("params", mismatches(p1, np.asarray(ref_p), leaf.dtype, start=p0))]
        for k, v in s1.items():
            where_bad.append((k, mismatches(v, np.asarray(ref_s[k]), leaf.dtype)))
        for what, mask in where_bad:
            cnt = int(np.count_nonzero(mask))
            if not cnt:
                continue
            j = int(np.argmax(mask))
            flat = int(idx[j]) if idx is not None else leaf.flat_index(j)
            index = tuple(int(i) for i in np.unravel_index(flat, leaf.shape)) if leaf.shape else ()
            if what == "params":
                got, want = float(p1[j]), float(np.asarray(ref_p)[j])
            else:
                got, want = float(s1[what][j]), float(np.asarray(ref_s[what])[j])
            related = {
                ctx.label("grads", leaf.path): float(g[j]),
                ctx.label("params", leaf.path): float(p0[j]),
            }
            for k in keys:
                related[ctx.label(k, leaf.path)] = float(s0[k][j])
            where = ctx.where(what, leaf.path)
            hyper = ", ".join(f"{k}={v!r}" for k, v in naming.changed_hyper(rule).items())
            out.append(
                Violation(
                    id="differs-from-reference",
                    where=where,
                    path=leaf.path,
                    message=(
                        f"{where} differs from {rule.name}({hyper}){ctx.at_step() if step is not None else ''} on "
                        + count_first(
                            cnt,
                            mask.size,
                            index,
                            f"{fmt_number(got)}, reference {fmt_number(want)}",
                            sampled=True,
                        )
                        + f"{related_text(related, before=True)}."
                    ),
                    hint=(
                        "The update computes something else than the reference rule: a misplaced ε (g/√S + ε "
                        "instead of g/(√S + ε)), another momentum or weight-decay convention, or a bug; run "
                        f"`python -m optcheck audit your_module.py:your_update --rule {rule.name}` to name it."
                    ),
                    step=step,
                    shape=leaf.shape,
                    dtype=str(leaf.dtype).rsplit(".", 1)[-1],
                    count=cnt,
                    counts={"differs": cnt},
                    size=int(mask.size),
                    index=index,
                    value=got,
                    related={"reference": want, **related},
                    sampled=True,
                )
            )
    return out
