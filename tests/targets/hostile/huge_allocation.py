"""Asks for 3/4 of the machine's memory (never touched). Expected: ``raised-exception`` MemoryError
under the default --max-memory (half the machine); without a limit the allocation would succeed
and the update is correct, so a PASS would mean the limit did not hold."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from _sgd import sgd


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    block = np.empty(int(total * 0.75) // 8)
    del block
    return sgd(parameters, grads, learning_rate)
