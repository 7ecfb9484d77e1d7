"""A functional Adafactor for one matrix, the paper's Algorithm 4: the factored averages of g² + eps1.

TARGET = "adafactor_update"; rule adafactor with ``--hyper eps1=1e-30``; expected verdict: pass, with
the convention ``adafactor-eps1-added``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adafactor_update"
RULE = "adafactor"
HYPER: dict[str, object] = {"eps1": 1e-30}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "adafactor-eps1-added"


def adafactor_update(x, g, state, eps1=1e-30, eps2=1e-3, d=1.0):  # type: ignore[no-untyped-def]
    t = (state or {}).get("t", 0) + 1
    beta = 1.0 - t**-0.8
    rho = min(1e-2, t**-0.5)
    alpha = max(eps2, float(np.sqrt(np.mean(x**2)))) * rho
    sq = g * g + eps1
    if x.ndim == 2:
        R = beta * (state["R"] if state else 0.0) + (1 - beta) * sq.mean(axis=1)
        C = beta * (state["C"] if state else 0.0) + (1 - beta) * sq.mean(axis=0)
        V = np.outer(R, C) / R.mean()
        new = {"t": t, "R": R, "C": C}
    else:
        V = beta * (state["V"] if state else 0.0) + (1 - beta) * sq
        new = {"t": t, "V": V}
    U = g / np.sqrt(V)
    U = U / max(1.0, float(np.sqrt(np.mean(U**2))) / d)
    return x - alpha * U, new
