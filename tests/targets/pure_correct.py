"""Functional Adam over dicts: ``adam_update(params, grads, state, **hyper) -> (params, state)``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


def adam_update(params, grads, state, **hyper):
    lr = hyper.get("lr", 1e-3)
    b1, b2 = hyper.get("b1", 0.9), hyper.get("b2", 0.999)
    eps = hyper.get("eps", 1e-8)
    if state is None:
        state = {
            "count": 0,
            "mu": {k: np.zeros_like(v) for k, v in params.items()},
            "nu": {k: np.zeros_like(v) for k, v in params.items()},
        }
    count = state["count"] + 1
    mu = {k: b1 * state["mu"][k] + (1 - b1) * grads[k] for k in params}
    nu = {k: b2 * state["nu"][k] + (1 - b2) * grads[k] ** 2 for k in params}
    new = {}
    for k, p in params.items():
        m_hat = mu[k] / (1 - b1**count)
        v_hat = nu[k] / (1 - b2**count)
        new[k] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return new, {"count": count, "mu": mu, "nu": nu}
