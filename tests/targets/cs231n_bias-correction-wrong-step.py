"""cs231n Adam written as ``adam_step(data, config)``: the step counter is bumped after the correction."""

import numpy as np

FINDS = ("bias-correction-wrong-step",)
FLAGS: dict = {}


def adam_step(data, grad, config=None):
    config = {} if config is None else config
    lr = config.setdefault("learning_rate", 1e-3)
    beta1 = config.setdefault("beta1", 0.9)
    beta2 = config.setdefault("beta2", 0.999)
    eps = config.setdefault("epsilon", 1e-8)
    m = config.get("m", np.zeros_like(data))
    v = config.get("v", np.zeros_like(data))
    t = config.get("t", 1)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    mb = m / (1 - beta1 ** (t + 1))
    vb = v / (1 - beta2 ** (t + 1))
    config.update(m=m, v=v, t=t + 1)
    return data - lr * mb / (np.sqrt(vb) + eps), config
