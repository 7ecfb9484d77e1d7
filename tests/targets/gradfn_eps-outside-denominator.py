"""RMSprop that evaluates the gradient itself: ``rmsprop_step(x, grad_fn, cache, lr=1e-2, rho=0.99, eps=1e-8)``."""

import numpy as np

FINDS = ("eps-outside-denominator",)
FLAGS: dict = {}


def rmsprop_step(x, grad_fn, cache, lr=1e-2, rho=0.99, eps=1e-8):
    dx = grad_fn(x)
    cache = rho * cache + (1 - rho) * dx * dx
    return x - lr * (dx / np.sqrt(cache) + eps), cache
