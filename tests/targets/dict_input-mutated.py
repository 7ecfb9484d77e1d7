"""Course-style RMSprop that adds the L2 term into the caller's gradient dict in place.

TARGET = "update_parameters_with_rmsprop"; rule rmsprop; expected finding: ``input-mutated``.
The update itself is right (the L2 term enters the gradient before squaring).
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_rmsprop"


def update_parameters_with_rmsprop(
    parameters, grads, S, learning_rate=0.01, beta=0.9, epsilon=1e-8, lambd=0.7, m=32
):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        W, b = "W" + str(layer), "b" + str(layer)
        grads["d" + W] += (lambd / m) * parameters[W]  # BUG: writes into the caller's gradients
        for p in (W, b):
            g = grads["d" + p]
            S["d" + p] = beta * S["d" + p] + (1 - beta) * g**2
            parameters[p] = parameters[p] - learning_rate * g / (np.sqrt(S["d" + p]) + epsilon)
    return parameters, S
