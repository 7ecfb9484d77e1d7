"""Course-style SGD that kills its own interpreter with SIGSEGV.

TARGET = "update_parameters"; rule sgd; expected finding: ``crashed``.
"""

from __future__ import annotations

import os
import signal

TARGET = "update_parameters"


def update_parameters(parameters, grads, learning_rate=0.001):  # type: ignore[no-untyped-def]
    os.kill(os.getpid(), signal.SIGSEGV)
