"""Course-style SGD, correct, that prints a megabyte per call.

TARGET = "update_parameters"; rule sgd; expected verdict: pass, with the info finding ``printed-output``.
"""

from __future__ import annotations

TARGET = "update_parameters"


def update_parameters(parameters, grads, learning_rate=0.001):  # type: ignore[no-untyped-def]
    print("x" * 1_000_000)
    for k in parameters:
        parameters[k] = parameters[k] - learning_rate * grads["d" + k]
    return parameters
