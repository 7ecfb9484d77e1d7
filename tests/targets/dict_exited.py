"""Course-style SGD that calls ``sys.exit`` when it sees a large gradient.

TARGET = "update_parameters"; rule sgd; expected finding: ``exited``.
"""

from __future__ import annotations

import sys

import numpy as np

TARGET = "update_parameters"


def update_parameters(parameters, grads, learning_rate=0.001):  # type: ignore[no-untyped-def]
    for k in parameters:
        if np.abs(grads["d" + k]).max() > 0.5:
            sys.exit("gradient exploded")
        parameters[k] = parameters[k] - learning_rate * grads["d" + k]
    return parameters
