"""The torch half of :func:`optcheck.trap`: name the first module whose output or gradient went non-finite.

Forward hooks on every module check its output and hook its output tensors, so that the
gradient of each output is checked when backward reaches it (the module that took that output
as input made it); tensor hooks check each parameter's gradient. Full backward hooks
(``register_full_backward_hook``) are not used: they break modules that work in place
(``nn.ReLU(inplace=True)``). A check is one reduction per
tensor (its sum is finite exactly when no entry is NaN or inf, unless the sum overflows, which
a second, exact test rules out), so the trap stays cheap. The first failure raises
:class:`~optcheck.InvariantError` from inside the forward or ``backward()`` call: a module is
blamed only when what went into it was finite; otherwise the message says where the values
came from and, where no module can be named, to use ``torch.autograd.set_detect_anomaly(True)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from ..invariants import InvariantError, Violation

__all__ = ["torch_hooks"]

_ANOMALY = (
    "run the step under `with torch.autograd.set_detect_anomaly(True):` to have torch name the "
    "operation (it is much slower; use it for this one step)"
)


def _tensors(x: Any) -> list[Any]:
    """The floating-point tensors in a module's inputs or outputs (tuples, lists, dicts, dataclasses)."""
    import torch

    out: list[Any] = []
    stack = [x]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.is_floating_point() or item.is_complex():
                out.append(item)
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return out


def _finite(t: Any) -> bool:
    if t.numel() == 0:
        return True
    s = float(t.detach().sum())
    if math.isfinite(s):
        return True
    import torch

    return bool(torch.isfinite(t.detach()).all())  # the sum overflowed (or a NaN): the exact test


def _stats(t: Any) -> tuple[str, int, int, int, str]:
    """(shape, NaN count, +inf count, -inf count, range of the finite entries) of a tensor."""
    import torch

    x = t.detach()
    if x.is_complex():
        x = torch.view_as_real(x)
    nan = int(torch.isnan(x).sum())
    pinf = int(torch.isposinf(x).sum())
    ninf = int(torch.isneginf(x).sum())
    fin = x[torch.isfinite(x)]
    rng = f"[{float(fin.min()):.4g}, {float(fin.max()):.4g}]" if fin.numel() else "none"
    return str(tuple(t.shape)), nan, pinf, ninf, rng


def _describe(t: Any) -> tuple[str, int]:
    shape, nan, pinf, ninf, rng = _stats(t)
    parts = [f"{n} {w}" for n, w in ((nan, "NaN"), (pinf, "+inf"), (ninf, "-inf")) if n]
    return (
        f"{', '.join(parts)} of {t.numel()} entries (shape {shape}, dtype {str(t.dtype).replace('torch.', '')}); "
        f"the finite entries lie in {rng}",
        nan + pinf + ninf,
    )


class _Trap:
    """The hooks of one ``trap(model)`` block and the names of the modules."""

    def __init__(self, model: Any) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.names: dict[int, str] = {}
        self.handles: list[Any] = []
        self.consumer: dict[int, Any] = {}  # id(tensor) -> the module that took it as input
        self.fired = False
        if model is not None:
            for name, module in model.named_modules():
                self.names.setdefault(id(module), name or type(model).__name__)

    def name(self, module: Any) -> str:
        n = self.names.get(id(module))
        label = type(module).__name__
        return f"{n!r} ({label})" if n is not None else label

    def fail(self, where: str, message: str, hint: str, count: int, shape: tuple[int, ...]) -> None:
        if self.fired:
            return
        self.fired = True
        v = Violation(
            id="non-finite",
            where=where,
            message=message,
            hint=hint,
            count=count,
            shape=shape,
            became=True,
        )
        raise InvariantError([v])

    # -- hooks ---------------------------------------------------------------------

    def forward(self, module: Any, inputs: Any, output: Any) -> None:
        if self.fired:
            return
        self.watch_output(module, output)
        for t in _tensors(output):
            if _finite(t):
                continue
            text, count = _describe(t)
            bad_in = [x for x in _tensors(inputs) if not _finite(x)]
            name = self.name(module)
            if bad_in:
                msg = (
                    f"torch: the input of module {name} is already non-finite in the forward pass "
                    f"({_describe(bad_in[0])[0]}), and so is its output."
                )
                hint = (
                    "No module before it produced the non-finite values: they come from the data or from code "
                    f"between modules (a functional call in forward); check the inputs, or {_ANOMALY}."
                )
            else:
                msg = (
                    f"torch: module {name} produced a non-finite output in the forward pass from finite inputs: "
                    f"{text}."
                )
                hint = (
                    f"The first non-finite value is made inside {name}'s forward: look there for log of a "
                    "number <= 0, sqrt of a negative number, a division by zero, or exp/pow overflowing "
                    "its dtype."
                )
            self.fail(f"{name} forward output", msg, hint, count, tuple(t.shape))

    def forward_pre(self, module: Any, inputs: Any) -> None:
        """Remember which module consumes each tensor (the innermost one: children run after parents)."""
        if module is self.model or len(self.consumer) > 100_000:
            self.consumer.clear()  # a new forward pass
        for t in _tensors(inputs):
            if t.requires_grad:
                self.consumer[id(t)] = module

    def watch_output(self, module: Any, output: Any) -> None:
        """Check the gradient of each output of ``module`` when backward reaches it."""
        for t in _tensors(output):
            if t.requires_grad:
                # not kept in self.handles: the hook lives and dies with the tensor (this step's graph)
                t.register_hook(self._output_hook(module, id(t)))

    def _output_hook(self, module: Any, t_id: int) -> Any:
        def hook(grad: Any) -> None:
            self.backward(module, t_id, grad)

        return hook

    def backward(self, module: Any, t_id: int, grad: Any) -> None:
        """The gradient of ``module``'s output: its consumer's backward made it (the first one that is non-finite)."""
        if self.fired or _finite(grad):
            return
        name = self.name(module)
        text, count = _describe(grad)
        consumer = self.consumer.get(t_id)
        if consumer is not None and consumer is not module:
            cname = self.name(consumer)
            msg = (
                f"torch: module {cname} produced a non-finite gradient in the backward pass (the gradient of "
                f"{name}'s output, which {cname} takes as input) from a finite incoming gradient: {text}."
            )
            hint = (
                f"The backward of {cname} divides by zero or overflows where its forward was finite (the derivative "
                "of sqrt or log at 0, of pow with a negative base, of a norm at 0); clamp its input away from the "
                "singular point."
            )
            where = f"{cname} backward"
        else:
            msg = f"torch: the gradient arriving at module {name}'s output in the backward pass is non-finite: {text}."
            hint = (
                "It was made after this module's output was used: in the loss or in code between modules (no "
                f"module hook sees it); {_ANOMALY}."
            )
            where = f"{name} output gradient"
        self.fail(where, msg, hint, count, tuple(grad.shape))

    def param_grad(self, name: str, grad: Any) -> None:
        if self.fired or _finite(grad):
            return
        text, count = _describe(grad)
        self.fail(
            f"{name} gradient",
            f"torch: the gradient of parameter {name!r} is non-finite: {text}.",
            "The modules' own gradients were finite, so it was made by an operation on the parameter outside a "
            f"module's forward (a weight used in a functional call, a regulariser in the loss); {_ANOMALY}.",
            count,
            tuple(grad.shape),
        )

    # -- installing ----------------------------------------------------------------

    def install(self) -> None:
        torch = self.torch
        if self.model is None:
            reg = torch.nn.modules.module
            self.handles.append(reg.register_module_forward_pre_hook(self.forward_pre))
            self.handles.append(reg.register_module_forward_hook(self.forward))
            return
        for module in self.model.modules():
            self.handles.append(module.register_forward_pre_hook(self.forward_pre))
            self.handles.append(module.register_forward_hook(self.forward))
        for pname, p in self.model.named_parameters():
            if p.requires_grad:
                self.handles.append(p.register_hook(lambda g, n=pname: self.param_grad(n, g)))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.consumer.clear()


@contextlib.contextmanager
def torch_hooks(model: Any) -> Iterator[None]:
    """Install the trap's hooks on ``model`` (every module when None) for the ``with`` block."""
    trap = _Trap(model)
    trap.install()
    try:
        yield
    finally:
        trap.remove()
