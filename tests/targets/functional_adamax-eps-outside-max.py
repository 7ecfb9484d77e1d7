"""jax ``example_libraries``-style Adamax: u = max(b2·u, |g|), then m/(u + eps).

TARGET = "adamax_update"; rule adamax; expected verdict: pass, with the convention
``adamax-eps-outside-max``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adamax_update"
RULE = "adamax"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "adamax-eps-outside-max"


def adamax_update(x, g, state, step_size=2e-3, b1=0.9, b2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    i, m, u = state if state is not None else (0, np.zeros_like(x), np.zeros_like(x))
    m = (1 - b1) * g + b1 * m
    u = np.maximum(b2 * u, np.abs(g))
    x = x - (step_size / (1 - b1 ** (i + 1))) * m / (u + eps)
    return x, (i + 1, m, u)
