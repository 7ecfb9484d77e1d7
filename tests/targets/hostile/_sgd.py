"""The correct course-style SGD the hostile targets wrap (imported by them from their own folder)."""

from __future__ import annotations

from typing import Any


def sgd(parameters: Any, grads: Any, learning_rate: float, scale: float = 1.0) -> Any:
    """``W -= lr * dW`` for every parameter (``scale`` times too far when ``scale != 1``)."""
    for k in list(parameters):
        parameters[k] = parameters[k] - scale * learning_rate * grads["d" + k]
    return parameters
