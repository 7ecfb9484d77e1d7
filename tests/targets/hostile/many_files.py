"""Opens 5000 files. Expected with --max-open-files 256: ``raised-exception`` (OSError, too many open files)."""

from __future__ import annotations

import os
from typing import Any

from _sgd import sgd


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    held = [open(os.devnull, "rb") for _ in range(5000)]  # noqa: SIM115 - held open on purpose
    del held
    return sgd(parameters, grads, learning_rate)
