"""Course-style SGD that raises on its second call.

TARGET = "update_parameters"; rule sgd; expected finding: ``raised-exception`` at step 2.
"""

from __future__ import annotations

TARGET = "update_parameters"


def update_parameters(parameters, grads, t, learning_rate=0.001):  # type: ignore[no-untyped-def]
    if t >= 2:
        raise ValueError("learning rate schedule not implemented past step 1")
    for k in parameters:
        parameters[k] = parameters[k] - learning_rate * grads["d" + k]
    return parameters
