"""A timm-``SGDW``-style step: decoupled decay p·(1 − lr·λ), then SGD with momentum on the raw gradient.

TARGET = "sgdw_step"; rule sgd with ``--hyper lr=0.1 momentum=0.9 weight_decay=0.01``; expected
verdict: pass, with the convention ``decoupled-decay``.
"""

from __future__ import annotations

TARGET = "sgdw_step"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "decoupled-decay"


def sgdw_step(param, grad, state, lr=0.1, momentum=0.9, weight_decay=0.01):  # type: ignore[no-untyped-def]
    param = param * (1.0 - lr * weight_decay)
    buf = grad.copy() if state is None else momentum * state + grad
    return param - lr * buf, buf
