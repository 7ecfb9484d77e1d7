"""A from-scratch RMSprop, course style, with the two bugs of the seed problem.

Training a small network with it dies with ``RuntimeWarning: invalid value
encountered in sqrt`` after a few steps. The two bugs:

1. the L2 penalty ``(reg_param / batch_size) * W`` (which can be negative) is added
   to the *squared* gradient, so ``S`` can go negative;
2. ``epsilon`` is added after the division instead of to the denominator.

Audit it with::

    python -m optcheck audit examples/rmsprop_nan.py
    (its one update function, its own defaults, the rule identified; --rule rmsprop to name it)
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
    """One RMSprop step with L2 regularisation on the weights (buggy)."""
    L = len(parameters) // 2
    for l in range(1, L + 1):
        W, b = "W" + str(l), "b" + str(l)
        dW = grads["d" + W] + (reg_param / batch_size) * parameters[W]
        db = grads["d" + b]
        # BUG 1: the L2 term is added to the squared gradient, not to the gradient before squaring
        S["d" + W] = beta * S["d" + W] + (1 - beta) * (grads["d" + W] ** 2 + (reg_param / batch_size) * parameters[W])
        S["d" + b] = beta * S["d" + b] + (1 - beta) * db**2
        # BUG 2: epsilon is added after the division instead of to the denominator
        parameters[W] = parameters[W] - learning_rate * (dW / np.sqrt(S["d" + W]) + epsilon)
        parameters[b] = parameters[b] - learning_rate * (db / np.sqrt(S["d" + b]) + epsilon)
    return parameters, S


# ---------------------------------------------------------------------------------------------
# A tiny two-layer network on synthetic data, to show the failure in a real loop.
# ---------------------------------------------------------------------------------------------


def make_data(m: int = 256, n_x: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic binary classification set: X of shape (n_x, m), Y of shape (1, m)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_x, m))
    Y = (X[0:1] * X[1:2] + 0.5 * X[2:3] > 0).astype(np.float64)
    return X, Y


def initialize_parameters(layers: list[int], seed: int = 1) -> dict[str, np.ndarray]:
    """He-initialised weights ``W1..WL`` of shape (n_l, n_{l-1}) and zero biases ``b1..bL`` of shape (n_l, 1)."""
    rng = np.random.default_rng(seed)
    parameters = {}
    for l in range(1, len(layers)):
        parameters["W" + str(l)] = rng.normal(size=(layers[l], layers[l - 1])) * np.sqrt(2.0 / layers[l - 1])
        parameters["b" + str(l)] = np.zeros((layers[l], 1))
    return parameters


def forward_backward(
    parameters: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Cross-entropy cost of a ReLU -> sigmoid network, and its gradients ``dW1, db1, dW2, db2``."""
    m = X.shape[1]
    Z1 = parameters["W1"] @ X + parameters["b1"]
    A1 = np.maximum(Z1, 0)
    Z2 = parameters["W2"] @ A1 + parameters["b2"]
    A2 = 1 / (1 + np.exp(-Z2))
    cost = float(-np.mean(Y * np.log(A2 + 1e-12) + (1 - Y) * np.log(1 - A2 + 1e-12)))
    dZ2 = (A2 - Y) / m
    dW2 = dZ2 @ A1.T
    db2 = dZ2.sum(axis=1, keepdims=True)
    dZ1 = (parameters["W2"].T @ dZ2) * (Z1 > 0)
    dW1 = dZ1 @ X.T
    db1 = dZ1.sum(axis=1, keepdims=True)
    return cost, {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def train(update=update_parameters_with_rmsprop, steps: int = 200, batch_size: int = 32, seed: int = 0):  # type: ignore[no-untyped-def]
    """Mini-batch training of a [4, 8, 1] network; returns the list of costs."""
    X, Y = make_data(seed=seed)
    parameters = initialize_parameters([4, 8, 1])
    S = initialize_rmsprop(parameters)
    costs = []
    for t in range(steps):
        start = (t * batch_size) % X.shape[1]
        xb, yb = X[:, start : start + batch_size], Y[:, start : start + batch_size]
        cost, grads = forward_backward(parameters, xb, yb)
        parameters, S = update(parameters, grads, S, batch_size=batch_size)
        costs.append(cost)
    return costs


if __name__ == "__main__":
    costs = train()
    print("cost at steps 0, 50, 100, 199:", [costs[i] for i in (0, 50, 100, 199)])
