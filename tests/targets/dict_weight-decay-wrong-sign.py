"""Course-style gradient descent with L2 regularisation subtracted instead of added.

TARGET = "update_parameters_with_gd"; rule sgd with ``--hyper lr=0.1``, ``--arg reg_param=0.7
--arg batch_size=32``; expected finding: ``weight-decay-wrong-sign``.
"""

from __future__ import annotations

TARGET = "update_parameters_with_gd"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1}
ARGS: dict[str, object] = {"reg_param": 0.7, "batch_size": 32}
EXPECT = ("weight-decay-wrong-sign",)


def update_parameters_with_gd(parameters, grads, learning_rate=0.1, reg_param=0.7, batch_size=32):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        W, b = "W" + str(layer), "b" + str(layer)
        dW = grads["d" + W] - (reg_param / batch_size) * parameters[W]  # BUG: minus
        parameters[W] = parameters[W] - learning_rate * dW
        parameters[b] = parameters[b] - learning_rate * grads["d" + b]
    return parameters
