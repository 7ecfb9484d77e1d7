"""Course-style RMSprop with epsilon added after the division.

TARGET = "update_parameters_with_rmsprop"; rule rmsprop (alpha=0.9 from ``beta``); expected
finding: ``eps-outside-denominator``.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_rmsprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT = ("eps-outside-denominator",)


def update_parameters_with_rmsprop(parameters, grads, S, learning_rate=0.01, beta=0.9, epsilon=1e-8):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        for p in ("W", "b"):
            k = p + str(layer)
            S["d" + k] = beta * S["d" + k] + (1 - beta) * grads["d" + k] ** 2
            parameters[k] = parameters[k] - learning_rate * (grads["d" + k] / np.sqrt(S["d" + k]) + epsilon)
    return parameters, S
