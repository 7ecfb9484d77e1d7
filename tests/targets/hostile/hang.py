"""Never returns. Expected: a ``timeout`` finding within --timeout."""

from __future__ import annotations

from typing import Any


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    while True:
        pass
