"""Course-style Adam that computes in float32 (as torch does by default) and hands back float64 arrays.

TARGET = "update_parameters_with_adam"; rule adam with ``--hyper lr=0.01``; expected verdict:
pass, with the convention ``float32-compute`` (its results are exactly float32 values).
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters_with_adam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "float32-compute"


def update_parameters_with_adam(
    parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8
):  # type: ignore[no-untyped-def]
    f32 = np.float32
    for key in list(parameters):
        k = "d" + key
        g = grads[k].astype(f32)
        v32 = f32(beta1) * v[k].astype(f32) + f32(1 - beta1) * g
        s32 = f32(beta2) * s[k].astype(f32) + f32(1 - beta2) * g * g
        v_hat = v32 / f32(1 - beta1**t)
        s_hat = s32 / f32(1 - beta2**t)
        p32 = parameters[key].astype(f32) - f32(learning_rate) * v_hat / (np.sqrt(s_hat) + f32(epsilon))
        v[k], s[k] = v32.astype(np.float64), s32.astype(np.float64)
        parameters[key] = p32.astype(np.float64)
    return parameters, v, s
