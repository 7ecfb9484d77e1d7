"""Course Adam whose update uses the raw moments: the bias correction is computed and then not used."""

import numpy as np

FINDS = ("missing-bias-correction",)
FLAGS: dict = {}


def update_parameters_with_adam(params, grads, m, s, t, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8):
    for key in params:
        g = grads["d" + key]
        m["d" + key] = beta1 * m["d" + key] + (1.0 - beta1) * g
        s["d" + key] = beta2 * s["d" + key] + (1.0 - beta2) * g * g
        m_hat = m["d" + key] / (1.0 - beta1**t)  # noqa: F841 - the bug: computed, never used
        s_hat = s["d" + key] / (1.0 - beta2**t)  # noqa: F841
        params[key] = params[key] - lr * m["d" + key] / (np.sqrt(s["d" + key]) + eps)
    return params, m, s
