"""Course-style Adam unrolled layer by layer; the line for dW2 accumulates the gradient, not its square.

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected finding:
``second-moment-not-squared`` (for one array).
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("second-moment-not-squared",)


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    for k in grads:
        v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
    s["dW1"] = beta2 * s["dW1"] + (1 - beta2) * grads["dW1"] ** 2
    s["db1"] = beta2 * s["db1"] + (1 - beta2) * grads["db1"] ** 2
    s["dW2"] = beta2 * s["dW2"] + (1 - beta2) * grads["dW2"]  # BUG: not squared
    s["db2"] = beta2 * s["db2"] + (1 - beta2) * grads["db2"] ** 2
    for name in ("W1", "b1", "W2", "b2"):
        v_hat = v["d" + name] / (1 - beta1**t)
        s_hat = s["d" + name] / (1 - beta2**t)
        with np.errstate(invalid="ignore"):
            parameters[name] = parameters[name] - learning_rate * v_hat / (np.sqrt(s_hat) + epsilon)
    return parameters, v, s
