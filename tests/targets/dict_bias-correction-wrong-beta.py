"""Course-style Adam whose second-moment correction uses beta1 (a copy-paste slip): s / (1 - beta1**t).

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected finding:
``bias-correction-wrong-beta``.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-beta",)


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        for p in ("W", "b"):
            k = "d" + p + str(layer)
            v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
            s[k] = beta2 * s[k] + (1 - beta2) * np.square(grads[k])
            v_corrected = v[k] / (1 - beta1**t)
            s_corrected = s[k] / (1 - beta1**t)  # BUG: beta1 where beta2 belongs
            parameters[p + str(layer)] -= learning_rate * v_corrected / (np.sqrt(s_corrected) + epsilon)
    return parameters, v, s
