"""cs231n-style SGD that forgets to return anything.

TARGET = "sgd"; rule sgd; expected finding: ``bad-return``.
"""

from __future__ import annotations

TARGET = "sgd"


def sgd(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    w = w - config["learning_rate"] * dw
