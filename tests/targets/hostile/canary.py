"""Correct unless it can read the canary environment variable, in which case it steps twice as
far. Expected: PASS (the variable is scrubbed); FAIL when it is passed through with --env."""

from __future__ import annotations

import os
from typing import Any

from _sgd import sgd


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    leaked = "OPTCHECK_CANARY_SECRET" in os.environ
    return sgd(parameters, grads, learning_rate, scale=2.0 if leaked else 1.0)
