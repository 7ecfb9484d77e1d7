"""A functional Adam that corrects the first moment with beta2 (the two correction lines swapped their rates).

TARGET = "adam"; rule adam; expected finding: ``bias-correction-wrong-beta``.
"""

from __future__ import annotations

import numpy as np

TARGET = "adam"
RULE = "adam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-beta",)


def adam(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    step, m, v = state if state is not None else (0, np.zeros_like(param), np.zeros_like(param))
    step += 1
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta2**step)  # BUG: beta2 where beta1 belongs
    v_hat = v / (1 - beta2**step)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), (step, m, v)
