"""``trap``: numpy's floating-point warnings as an :class:`~optcheck.InvariantError` naming the user's line."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._core import validate as _v
from .._core.errors import UsageTypeError
from ..invariants import (
    InvariantError,
    Violation,
)


@contextlib.contextmanager
def trap(
    model: Any = None,
    *,
    invalid: bool = True,
    divide: bool = True,
    overflow: bool = True,
    underflow: bool = False,
) -> Iterator[None]:
    """Stop at the first NaN or inf made inside the block, naming your source line (numpy) or module (torch).

    numpy: inside ``with optcheck.trap():`` numpy's "invalid value" (NaN from √ of a negative
    or 0/0), "divide by zero" and "overflow" warnings become an :class:`~optcheck.InvariantError`
    whose message quotes the file, line and code that produced it.

    torch: ``with optcheck.trap(model):`` hooks every module of ``model`` for the block and
    raises from the forward call or from ``loss.backward()`` at the first module whose output,
    or whose gradient in the backward pass, went non-finite, naming the module by its
    qualified name (``'encoder.fc1' (Linear)``) with the offending tensor's shape, number of
    NaN/inf entries and the range of its finite entries; a parameter's non-finite gradient is
    named too. Where no module can be blamed (the loss, code between modules) it says so and
    points to ``torch.autograd.set_detect_anomaly(True)``. ``trap()`` without a model, when
    torch is imported, hooks every module called in the block, named by class. The hooks are
    removed on leaving the block. Usable as a decorator.
    """
    for arg, v in (
        ("invalid", invalid),
        ("divide", divide),
        ("overflow", overflow),
        ("underflow", underflow),
    ):
        _v.check_bool(arg, v)
    kinds = {"invalid": invalid, "divide": divide, "over": overflow, "under": underflow}
    torch = sys.modules.get("torch")
    if model is not None and (torch is None or not isinstance(model, torch.nn.Module)):
        raise UsageTypeError(
            "trap(model) takes a torch.nn.Module (its modules are hooked to name the first that makes a NaN), "
            f"got {type(model).__name__}; for numpy code use trap() without arguments"
        )
    settings = {k: ("raise" if v else "ignore") for k, v in kinds.items()}
    hooks: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if torch is not None:
        from ._torchtrap import torch_hooks

        hooks = torch_hooks(model)
    try:
        with hooks, np.errstate(**settings):  # type: ignore[arg-type]
            yield
    except InvariantError:
        raise
    except FloatingPointError as e:
        frame = _user_frame(e.__traceback__)
        if frame is None:
            raise
        filename, lineno, code = frame
        msg = f"{e} at {filename}:{lineno}: {code}"
        err = InvariantError(
            [
                Violation(
                    id="non-finite",
                    where=f"{os.path.basename(filename)}:{lineno}",
                    message=f"numpy: {msg}.",
                    hint=(
                        "This operation is the first to produce NaN or inf: look at its inputs just before this "
                        "line (a negative number under a square root, 0/0, log of 0, exp of a large number)."
                    ),
                    became=True,
                )
            ],
            message=f"numpy: {msg}",
        )
        raise err from None


def _user_frame(tb: types.TracebackType | None) -> tuple[str, int, str] | None:
    """The innermost traceback frame outside numpy and optcheck: (file, line, code)."""
    np_dir = os.path.dirname(np.__file__)
    here = os.path.dirname(os.path.abspath(__file__))
    found = None
    for fs in traceback.extract_tb(tb):
        f = os.path.abspath(fs.filename)
        if f.startswith(np_dir) or f.startswith(here) or "contextlib" in f:
            continue
        found = (fs.filename, int(fs.lineno or 0), (fs.line or "").strip())
    return found
