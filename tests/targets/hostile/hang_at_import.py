"""Hangs while being imported. Expected: exit 2, "did not finish importing" within the load limit."""

from __future__ import annotations

from typing import Any

while True:
    pass


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:  # pragma: no cover
    return parameters
