"""Writes garbage, then a frame header announcing a terabyte, to every file descriptor it can,
then returns a WRONG update. Expected: ``protocol-violation``, exit 1."""

from __future__ import annotations

import contextlib
import os
import struct
from typing import Any

from _sgd import sgd


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    junk = os.urandom(4096) if parameters else b""
    for fd in range(3, 64):
        with contextlib.suppress(OSError):
            os.write(fd, struct.pack("<4sIQQ", b"OPTC", 1, 10**12, 10**12) + junk)
    return sgd(parameters, grads, learning_rate, scale=2.0)
