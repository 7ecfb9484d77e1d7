"""Returns an 800 MB array (calloc'd, never touched). Expected: ``bad-return`` naming the reply limit."""

from __future__ import annotations

from typing import Any

import numpy as np


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    return {k: np.zeros(100_000_000) for k in parameters}
