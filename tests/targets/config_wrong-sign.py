"""cs231n-style SGD that adds the gradient step (ascent).

TARGET = "sgd"; rule sgd with ``--hyper lr=0.01``; expected finding: ``wrong-sign``.
"""

from __future__ import annotations

TARGET = "sgd"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("wrong-sign",)


def sgd(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    w = w + config["learning_rate"] * dw  # BUG: +
    return w, config
