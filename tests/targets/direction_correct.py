"""Adam that returns only the step to subtract (the caller does ``w -= lr * step``): ``adam_direction(g, m, v, t)``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


def adam_direction(g, m, v, t, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * (g * g)
    step = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return step, m, v
