"""Writes a pickle that would run code (create the file named by the marker) to every file
descriptor it can, the protocol's reply channel included, then returns a WRONG update (twice the
step). Expected: ``protocol-violation``, exit 1, and the file never created (nothing unpickled)."""

from __future__ import annotations

import contextlib
import os
import pickle
from typing import Any

from _sgd import sgd

MARKER = os.environ.get("OPTCHECK_HOSTILE_MARKER", "optcheck-hostile-marker")


class _Payload:
    def __reduce__(self) -> Any:
        return (open, (os.path.join(os.environ.get("OPTCHECK_HOSTILE_DIR", "/tmp"), MARKER + ".pwned"), "w"))


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    data = pickle.dumps(("ok", _Payload()))
    frame = len(data).to_bytes(4, "big") + data  # multiprocessing.Connection's framing
    for fd in range(3, 64):
        with contextlib.suppress(OSError):
            os.write(fd, frame)
    return sgd(parameters, grads, learning_rate, scale=2.0)
