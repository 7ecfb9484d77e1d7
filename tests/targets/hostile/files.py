"""Writes and deletes files in its working directory and in $HOME, then returns the correct
update. Expected: a clean PASS, and the user's directory and home unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from _sgd import sgd


def _vandalise(folder: Path) -> None:
    try:
        for p in list(folder.iterdir()):
            if p.is_file():
                p.unlink()
        (folder / "written-by-the-target.txt").write_text("pwned")
    except OSError:
        pass


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    _vandalise(Path.cwd())
    _vandalise(Path(os.path.expanduser("~")))
    _vandalise(Path(os.environ.get("HOME", ".")))
    return sgd(parameters, grads, learning_rate)
