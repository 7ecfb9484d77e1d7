"""The seed problem's RMSprop with both bugs fixed (course style).

* the L2 penalty is added to the gradient *before* squaring:
  ``g = dW + (reg_param / batch_size) * W``, ``S = beta*S + (1 - beta)*g**2``;
* epsilon goes into the denominator: ``W -= learning_rate * g / (np.sqrt(S) + epsilon)``.

It matches ``optcheck.rules.get("rmsprop", alpha=beta, lr=learning_rate, eps=epsilon,
weight_decay=reg_param / batch_size)`` with the weight decay applied to the weights only::

    python -m optcheck audit examples/rmsprop_fixed.py:update_parameters_with_rmsprop --rule rmsprop \
        --hyper alpha=0.9 --hyper lr=0.01 --hyper eps=1e-8 --arg reg_param=0.7 --arg batch_size=32
"""

from __future__ import annotations

import numpy as np


def initialize_rmsprop(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zero second-moment accumulators ``S["dW1"], S["db1"], ...`` for ``parameters``."""
    L = len(parameters) // 2
    S = {}
    for l in range(1, L + 1):
        S["dW" + str(l)] = np.zeros_like(parameters["W" + str(l)])
        S["db" + str(l)] = np.zeros_like(parameters["b" + str(l)])
    return S


def update_parameters_with_rmsprop(
    parameters: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    S: dict[str, np.ndarray],
    learning_rate: float = 0.01,
    beta: float = 0.9,
    epsilon: float = 1e-8,
    reg_param: float = 0.7,
    batch_size: int = 32,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One RMSprop step with L2 regularisation on the weights."""
    L = len(parameters) // 2
    for l in range(1, L + 1):
        W, b = "W" + str(l), "b" + str(l)
        dW = grads["d" + W] + (reg_param / batch_size) * parameters[W]
        db = grads["d" + b]
        S["d" + W] = beta * S["d" + W] + (1 - beta) * dW**2
        S["d" + b] = beta * S["d" + b] + (1 - beta) * db**2
        parameters[W] = parameters[W] - learning_rate * dW / (np.sqrt(S["d" + W]) + epsilon)
        parameters[b] = parameters[b] - learning_rate * db / (np.sqrt(S["d" + b]) + epsilon)
    return parameters, S


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from rmsprop_nan import train

    costs = train(update_parameters_with_rmsprop)
    print("cost at steps 0, 50, 100, 199:", [costs[i] for i in (0, 50, 100, 199)])
