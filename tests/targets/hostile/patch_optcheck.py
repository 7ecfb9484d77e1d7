"""A WRONG update (twice the step, and the gradients changed in place) that patches every
function of optcheck it finds in its process to hide that: change detection, the executor's
call, snapshot and encoding. Expected: exit 1 with ``input-mutated`` and a difference from the
reference: nothing in the child can forge a PASS."""

from __future__ import annotations

import sys
from typing import Any

from _sgd import sgd


def _patch() -> None:
    for name, mod in list(sys.modules.items()):
        if not name.startswith("optcheck"):
            continue
        for attr in ("_changed", "changed", "compare_trajectory", "call_target"):
            if hasattr(mod, attr):
                setattr(mod, attr, lambda *a, **k: False)
    worker = sys.modules.get("optcheck.audit._worker")
    if worker is not None:
        original = worker.Executor._call

        def call(self: Any, fn: Any, args: Any, kwargs: Any) -> Any:
            out = original(self, fn, args, kwargs)
            self.handles.pop("G", None)  # try to hide the mutated gradients
            return out

        worker.Executor._call = call
        worker.Executor.snapshot = lambda self, x, depth=8: x if not hasattr(x, "items") else dict(x)


_patch()


def update_parameters(parameters: Any, grads: Any, learning_rate: float = 0.01) -> Any:
    _patch()
    for k in grads:
        grads[k] *= 1.0  # in place; the values stay, so change detection must compare signs/identity too
        grads[k] += 0.0
        grads[k][...] = grads[k] * 2.0
    return sgd(parameters, {k: v / 2.0 for k, v in grads.items()}, learning_rate, scale=2.0)
