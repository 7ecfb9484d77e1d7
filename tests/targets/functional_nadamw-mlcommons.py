"""The MLCommons-form NAdam without decay, as a pure function: m̄ = (β1·m + (1 − β1)·g)/(1 − β1^t).

TARGET = "nadam_step"; rule nadam; expected verdict: pass, with the convention ``nadamw-mlcommons``.
"""

from __future__ import annotations

import numpy as np

TARGET = "nadam_step"
RULE = "nadam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "nadamw-mlcommons"


def nadam_step(param, grad, state, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
    b1, b2 = betas
    if state is None:
        state = {"t": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
    t = state["t"] + 1
    m = b1 * state["m"] + (1 - b1) * grad
    v = b2 * state["v"] + (1 - b2) * grad**2
    m_bar = (b1 * m + (1 - b1) * grad) / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return param - lr * m_bar / (np.sqrt(v_hat) + eps), {"t": t, "m": m, "v": v}
