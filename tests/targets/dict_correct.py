"""Course-style Adam, correct: ``python -m optcheck audit tests/targets/dict_correct.py:update_parameters_with_adam --rule adam``.

TARGET = "update_parameters_with_adam"; expected verdict: pass.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    v_corrected = {}
    s_corrected = {}
    for layer in range(1, L + 1):
        for p in ("W", "b"):
            k = "d" + p + str(layer)
            v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
            v_corrected[k] = v[k] / (1 - beta1**t)
            s[k] = beta2 * s[k] + (1 - beta2) * np.square(grads[k])
            s_corrected[k] = s[k] / (1 - beta2**t)
            parameters[p + str(layer)] = parameters[p + str(layer)] - learning_rate * v_corrected[k] / (
                np.sqrt(s_corrected[k]) + epsilon
            )
    return parameters, v, s, v_corrected, s_corrected
