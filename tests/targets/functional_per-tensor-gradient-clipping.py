"""A functional SGD with momentum that clips the gradient array to norm 1 before using it.

TARGET = "clipped_sgd"; rule sgd with ``--hyper lr=0.1 momentum=0.9``; expected verdict: pass, with the
convention ``per-tensor-gradient-clipping``.
"""

from __future__ import annotations

import numpy as np

TARGET = "clipped_sgd"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "per-tensor-gradient-clipping"


def clipped_sgd(param, grad, state, lr=0.1, momentum=0.9, max_norm=1.0):  # type: ignore[no-untyped-def]
    coef = max_norm / (float(np.linalg.norm(grad)) + 1e-6)
    g = grad * min(coef, 1.0)
    buf = g.copy() if state is None else momentum * state + g
    return param - lr * buf, buf
