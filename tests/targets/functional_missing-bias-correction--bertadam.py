"""A BertAdam-like functional step for one array: the gradient clipped to norm 1, moments never corrected.

TARGET = "bert_adam"; rule adam; expected finding: ``missing-bias-correction``.
"""

from __future__ import annotations

import numpy as np

TARGET = "bert_adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("missing-bias-correction",)


def bert_adam(param, grad, state, lr=1e-3, b1=0.9, b2=0.999, e=1e-8, max_grad_norm=1.0):  # type: ignore[no-untyped-def]
    m, v = state if state is not None else (np.zeros_like(param), np.zeros_like(param))
    norm = float(np.linalg.norm(grad))
    if norm > 0 and max_grad_norm / (norm + 1e-6) < 1:
        grad = grad * (max_grad_norm / (norm + 1e-6))
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return param - lr * m / (np.sqrt(v) + e), (m, v)
