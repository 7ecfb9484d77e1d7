"""Course-style SGD that never returns (an endless loop).

TARGET = "update_parameters"; rule sgd; expected finding: ``timeout`` (run with --timeout 1).
"""

from __future__ import annotations

TARGET = "update_parameters"


def update_parameters(parameters, grads, learning_rate=0.001):  # type: ignore[no-untyped-def]
    while True:
        pass
