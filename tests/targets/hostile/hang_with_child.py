"""Starts a marked grandchild, then never returns (for the SIGTERM and SIGKILL cases)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

MARKER = os.environ.get("OPTCHECK_HOSTILE_MARKER", "optcheck-hostile-marker")


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", MARKER], start_new_session=True)
    while True:
        time.sleep(0.05)
