"""A functional Adagrad that keeps its accumulator in a module-level global.

TARGET = "step"; rule adagrad; expected finding: ``nondeterministic`` (the accumulator survives
from one run to the next, so the same inputs give different outputs).
"""

from __future__ import annotations

import numpy as np

TARGET = "step"

_SUM: dict[tuple[int, ...], np.ndarray] = {}


def step(param, grad, state, lr=0.01, eps=1e-10):  # type: ignore[no-untyped-def]
    acc = _SUM.get(param.shape)
    acc = grad * grad if acc is None else acc + grad * grad
    _SUM[param.shape] = acc
    return param - lr * grad / (np.sqrt(acc) + eps), {"sum": acc}
