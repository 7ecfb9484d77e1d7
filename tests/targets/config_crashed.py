"""A cs231n-style SGD that dereferences a NULL pointer (a real segmentation fault) on a zero gradient.

TARGET = "sgd"; rule sgd; expected finding: ``crashed``.
"""

from __future__ import annotations

import ctypes

import numpy as np

TARGET = "sgd"


def sgd(w, dw, config=None):  # type: ignore[no-untyped-def]
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    if np.any(dw == 0):
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    w -= config["learning_rate"] * dw
    return w, config
