"""Writes a 4 MiB file into its working directory. Expected with --max-file-size 1M: the write
fails inside the target (``raised-exception``, OSError), and nothing reaches the user's folder."""

from __future__ import annotations

from typing import Any

from _sgd import sgd


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    with open("big.bin", "wb") as f:
        f.write(b"\0" * (4 << 20))
    return sgd(parameters, grads, learning_rate)
