"""Forks sleeping children on every call (bounded: 8 per call), carrying the test's marker in
their command line, then returns the correct update. Expected: a clean PASS and no process left."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from _sgd import sgd

MARKER = os.environ.get("OPTCHECK_HOSTILE_MARKER", "optcheck-hostile-marker")


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    for _ in range(8):
        try:
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", MARKER])
        except OSError:
            break
    return sgd(parameters, grads, learning_rate)
