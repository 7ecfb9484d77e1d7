"""An Adam loop driver whose bias correction uses the step after the current one (t + 1)."""

import numpy as np

FINDS = ("bias-correction-wrong-step",)
FLAGS: dict = {}


def adam_loop(grad_fn, x0, num_iters=50, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, callback=None):
    x = np.array(x0, dtype=float)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for it in range(1, num_iters + 1):
        g = grad_fn(x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        x = x - lr * (m / (1 - beta1 ** (it + 1))) / (np.sqrt(v / (1 - beta2 ** (it + 1))) + eps)
        if callback is not None:
            callback(x)
    return x
