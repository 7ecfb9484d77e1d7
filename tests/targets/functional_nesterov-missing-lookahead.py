"""A functional SGD with a ``nesterov`` flag that is never read.

TARGET = "sgd_step"; rule sgd with ``--hyper lr=0.1 --hyper momentum=0.9 --hyper nesterov=True``;
expected finding: ``nesterov-missing-lookahead``.
"""

from __future__ import annotations

TARGET = "sgd_step"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9, "nesterov": True}
ARGS: dict[str, object] = {}
EXPECT = ("nesterov-missing-lookahead",)


def sgd_step(param, grad, state, lr=0.01, momentum=0.9, nesterov=False):  # type: ignore[no-untyped-def]
    buf = grad.copy() if state is None else momentum * state["momentum_buffer"] + grad
    return param - lr * buf, {"momentum_buffer": buf}
