"""autograd-style RMSprop (``autograd.misc.optimizers.rmsprop``): the average of squares starts at ones.

TARGET = "rmsprop_step"; rule rmsprop with ``--hyper alpha=0.9 lr=0.1``; expected verdict: pass,
with the convention ``square-avg-init-one``.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop_step"
RULE = "rmsprop"
HYPER: dict[str, object] = {"alpha": 0.9, "lr": 0.1}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "square-avg-init-one"


def rmsprop_step(x, g, state, step_size=0.1, gamma=0.9, eps=1e-8):  # type: ignore[no-untyped-def]
    avg_sq_grad = np.ones_like(x) if state is None else state
    avg_sq_grad = avg_sq_grad * gamma + g**2 * (1 - gamma)
    x = x - step_size * g / (np.sqrt(avg_sq_grad) + eps)
    return x, avg_sq_grad
