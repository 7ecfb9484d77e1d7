"""Course-style SGD with gradient clipping; ``clip`` has no default, so it must be given with ``--arg``.

TARGET = "update_parameters"; rule sgd; ``--arg clip=1e300`` (clipping never triggers): pass.
Without ``--arg clip=...`` the audit cannot bind ``clip`` and exits with status 2.
"""

from __future__ import annotations

import numpy as np

TARGET = "update_parameters"


def update_parameters(parameters, grads, clip, learning_rate=0.001):  # type: ignore[no-untyped-def]
    for k in parameters:
        parameters[k] = parameters[k] - learning_rate * np.clip(grads["d" + k], -clip, clip)
    return parameters
