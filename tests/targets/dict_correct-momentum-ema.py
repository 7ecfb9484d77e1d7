"""Course-style momentum: the EMA form ``v = beta*v + (1-beta)*dW; W -= lr*v`` (convention momentum-ema).

TARGET = "update_parameters_with_momentum"; rule sgd with momentum; expected verdict: pass with the
info finding ``momentum-ema``.
"""

from __future__ import annotations

TARGET = "update_parameters_with_momentum"


def update_parameters_with_momentum(parameters, grads, v, beta=0.9, learning_rate=0.01):  # type: ignore[no-untyped-def]
    L = len(parameters) // 2
    for layer in range(1, L + 1):
        for p in ("W", "b"):
            k = "d" + p + str(layer)
            v[k] = beta * v[k] + (1 - beta) * grads[k]
            parameters[p + str(layer)] = parameters[p + str(layer)] - learning_rate * v[k]
    return parameters, v
