"""Course-style RMSprop with the L2 penalty inside the square of ``S``, but a step with the raw gradient.

TARGET = "update_parameters_with_rmsprop"; rule rmsprop (alpha=0.9), ``--arg reg_param=0.7
--arg batch_size=32``; expected finding: ``weight-decay-in-second-moment-only``.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_rmsprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {"reg_param": 0.7, "batch_size": 32}
EXPECT = ("weight-decay-in-second-moment-only",)


def update_parameters_with_rmsprop(
    parameters, grads, S, learning_rate=0.01, beta=0.9, epsilon=1e-8, reg_param=0.7, batch_size=32
):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    lam = reg_param / batch_size
    for layer in range(1, L + 1):
        W, b = "W" + str(layer), "b" + str(layer)
        dW = grads["d" + W]
        db = grads["d" + b]
        S["d" + W] = beta * S["d" + W] + (1 - beta) * (dW + lam * parameters[W]) ** 2
        S["d" + b] = beta * S["d" + b] + (1 - beta) * db**2
        parameters[W] = parameters[W] - learning_rate * dW / (np.sqrt(S["d" + W]) + epsilon)
        parameters[b] = parameters[b] - learning_rate * db / (np.sqrt(S["d" + b]) + epsilon)
    return parameters, S
