"""Course-style Adam with ``beta1`` and ``1 - beta1`` swapped in the first moment.

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected finding:
``decay-rates-swapped``.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("decay-rates-swapped",)


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        for p in ("W", "b"):
            k = "d" + p + str(layer)
            v[k] = (1 - beta1) * v[k] + beta1 * grads[k]  # BUG: swapped
            s[k] = beta2 * s[k] + (1 - beta2) * grads[k] ** 2
            v_corrected = v[k] / (1 - beta1**t)
            s_corrected = s[k] / (1 - beta2**t)
            parameters[p + str(layer)] = parameters[p + str(layer)] - learning_rate * v_corrected / (
                np.sqrt(s_corrected) + epsilon
            )
    return parameters, v, s
