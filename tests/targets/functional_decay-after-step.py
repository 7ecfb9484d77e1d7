"""A functional AdamW that takes the Adam step first and decays the new parameters afterwards.

TARGET = "adamw_step"; rule adamw with ``--hyper weight_decay=0.1 lr=0.01``; expected verdict: pass,
with the convention ``decay-after-step``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adamw_step"
RULE = "adamw"
HYPER: dict[str, object] = {"weight_decay": 0.1, "lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "decay-after-step"


def adamw_step(w, dw, state, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1):  # type: ignore[no-untyped-def]
    t, m, v = state if state is not None else (0, 0.0, 0.0)
    t += 1
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * dw**2
    w = w - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    w = w * (1 - lr * weight_decay)
    return w, (t, m, v)
