"""A functional momentum SGD in the velocity form ``v = mu*v - lr*g; p += v`` (Keras, cs231n).

TARGET = "sgd_momentum"; rule sgd with ``--hyper lr=0.1 --hyper momentum=0.9``; expected verdict:
pass (the velocity form moves the parameters exactly as torch's form for a constant lr; when the
audit maps the velocity to the momentum buffer it names the convention ``momentum-velocity``).
"""

from __future__ import annotations

import numpy as np

TARGET = "sgd_momentum"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = None


def sgd_momentum(param, grad, state, lr=0.01, momentum=0.9):  # type: ignore[no-untyped-def]
    v = np.zeros_like(param) if state is None else state["velocity"]
    v = momentum * v - lr * grad
    return param + v, {"velocity": v}
