"""cs231n-style SGD with momentum whose weight decay has the wrong sign (``dw - wd*w``).

TARGET = "sgd_momentum"; rule sgd with ``--hyper lr=0.01 --hyper momentum=0.9 --hyper
weight_decay=0.05``; expected finding: ``weight-decay-wrong-sign``.
"""

from __future__ import annotations

TARGET = "sgd_momentum"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.05}
ARGS: dict[str, object] = {}
EXPECT = ("weight-decay-wrong-sign",)


def sgd_momentum(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("weight_decay", 0.0)
    g = dw - config["weight_decay"] * w  # BUG: the decay term pushes away from zero
    v = g.copy() if "velocity" not in config else config["momentum"] * config["velocity"] + g
    config["velocity"] = v
    return w - config["learning_rate"] * v, config
