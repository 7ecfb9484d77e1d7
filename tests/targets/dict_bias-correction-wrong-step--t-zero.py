"""Course-style Adam called in a loop that counts from 0: ``1 - beta1**(t - 1)`` is 0 on the first call.

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected finding:
``bias-correction-wrong-step`` (not a generic non-finite value).
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("bias-correction-wrong-step",)


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    step = t - 1  # BUG: the loop's t already starts at 1; this makes the first step 0
    for name in list(parameters):
        d = "d" + name
        v[d] = beta1 * v[d] + (1 - beta1) * grads[d]
        s[d] = beta2 * s[d] + (1 - beta2) * grads[d] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            v_hat = v[d] / (1 - beta1**step)
            s_hat = s[d] / (1 - beta2**step)
        parameters[name] = parameters[name] - learning_rate * v_hat / (np.sqrt(s_hat) + epsilon)
    return parameters, v, s
