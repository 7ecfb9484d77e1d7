"""Leaves a grandchild that holds the worker's stdout and stderr open (and writes to them).
Expected: the audit neither waits for it nor leaves it running; a clean PASS."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from _sgd import sgd

MARKER = os.environ.get("OPTCHECK_HOSTILE_MARKER", "optcheck-hostile-marker")
_started = []


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    if not _started:
        code = "import sys, time\nwhile True:\n    sys.stdout.write('x' * 1000); sys.stdout.flush(); time.sleep(0.01)"
        _started.append(subprocess.Popen([sys.executable, "-c", code, MARKER]))
    os.write(1, b"written to fd 1 by the target\n")
    return sgd(parameters, grads, learning_rate)
