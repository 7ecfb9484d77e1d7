"""Functional RMSprop over dicts whose average is of |g| instead of g**2: ``rms_step(params, grads, state, lr, alpha, eps)``."""

import numpy as np

FINDS = ("second-moment-not-squared",)
FLAGS: dict = {}


def rms_step(params, grads, state=None, lr=0.01, alpha=0.99, eps=1e-8):
    if state is None:
        state = {name: np.zeros_like(p) for name, p in params.items()}
    new_params, new_state = {}, {}
    for name, p in params.items():
        sq = alpha * state[name] + (1 - alpha) * np.abs(grads[name])
        new_state[name] = sq
        new_params[name] = p - lr * grads[name] / (np.sqrt(sq) + eps)
    return new_params, new_state
