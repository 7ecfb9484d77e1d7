"""A functional SGD that ends the process with ``os._exit(3)`` (no cleanup, no exception).

TARGET = "step"; rule sgd; expected finding: ``exited``.
"""

from __future__ import annotations

import os

TARGET = "step"


def step(param, grad, state, lr=0.001):  # type: ignore[no-untyped-def]
    os._exit(3)
