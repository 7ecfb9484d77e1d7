"""Course-style RMSprop with the weights and biases written out separately; the bias line lost its sqrt.

TARGET = "update_parameters_with_rmsprop"; rule rmsprop with ``--hyper alpha=0.9 lr=0.01``;
expected finding: ``missing-sqrt`` (on the biases only).
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_rmsprop"
RULE = "rmsprop"
HYPER: dict[str, object] = {"alpha": 0.9, "lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("missing-sqrt",)


def update_parameters_with_rmsprop(parameters, grads, S, beta=0.9, learning_rate=0.01, epsilon=1e-8):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for n in range(1, L + 1):
        dW, db = grads["dW" + str(n)], grads["db" + str(n)]
        S["dW" + str(n)] = beta * S["dW" + str(n)] + (1 - beta) * dW**2
        S["db" + str(n)] = beta * S["db" + str(n)] + (1 - beta) * db**2
        parameters["W" + str(n)] -= learning_rate * dW / (np.sqrt(S["dW" + str(n)]) + epsilon)
        parameters["b" + str(n)] -= learning_rate * db / (S["db" + str(n)] + epsilon)  # BUG: no sqrt
    return parameters, S
