"""Course-style Adam that corrects v but never s: the bias correction is missing on one moment only.

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected finding:
``missing-bias-correction``.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("missing-bias-correction",)


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    for key in [k for k in parameters if k.startswith("W")]:
        n = key[1:]
        for p in ("W" + n, "b" + n):
            d = "d" + p
            v[d] = beta1 * v[d] + (1 - beta1) * grads[d]
            s[d] = beta2 * s[d] + (1 - beta2) * grads[d] ** 2
            v_hat = v[d] / (1 - beta1**t)
            parameters[p] = parameters[p] - learning_rate * v_hat / (
                np.sqrt(s[d]) + epsilon
            )  # BUG: s uncorrected
    return parameters, v, s
