"""Returns object-dtype arrays. Expected: ``bad-return`` naming the dtype, never a crash."""

from __future__ import annotations

from typing import Any

import numpy as np


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    return {k: np.asarray(v - learning_rate * grads["d" + k], dtype=object) for k, v in parameters.items()}
