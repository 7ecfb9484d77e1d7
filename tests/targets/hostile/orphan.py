"""Starts a child in a session of its own (outside the worker's process group), stdout
redirected: a classic orphan. Expected: a clean PASS and no process left."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from _sgd import sgd

MARKER = os.environ.get("OPTCHECK_HOSTILE_MARKER", "optcheck-hostile-marker")


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", MARKER],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return sgd(parameters, grads, learning_rate)
