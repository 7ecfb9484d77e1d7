"""Course-style Adam accumulating ``|dW|`` instead of ``dW**2`` in ``s``.

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected finding:
``second-moment-not-squared``.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("second-moment-not-squared",)


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        for p in ("W", "b"):
            k = "d" + p + str(layer)
            v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
            s[k] = beta2 * s[k] + (1 - beta2) * np.abs(grads[k])  # BUG: not squared
            v_corrected = v[k] / (1 - beta1**t)
            s_corrected = s[k] / (1 - beta2**t)
            parameters[p + str(layer)] = parameters[p + str(layer)] - learning_rate * v_corrected / (
                np.sqrt(s_corrected) + epsilon
            )
    return parameters, v, s
