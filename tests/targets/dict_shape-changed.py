"""Course-style SGD whose bias update broadcasts (n, 1) with (n,) into (n, n).

TARGET = "update_parameters"; rule sgd; expected finding: ``shape-changed``.
"""

from __future__ import annotations

TARGET = "update_parameters"


def update_parameters(parameters, grads, learning_rate=0.01):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        parameters["W" + str(layer)] = parameters["W" + str(layer)] - learning_rate * grads["dW" + str(layer)]
        db = grads["db" + str(layer)].sum(axis=1)  # BUG: shape (n,), not (n, 1)
        parameters["b" + str(layer)] = parameters["b" + str(layer)] - learning_rate * db
    return parameters
