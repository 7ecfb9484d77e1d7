"""A ``torch.optim.Optimizer`` SGD with momentum that accepts ``maximize`` and then ignores it.

TARGET = "MaxSGD"; rule sgd; expected finding: ``torch-maximize`` (only with maximize=True).
"""

from __future__ import annotations

import torch

TARGET = "MaxSGD"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.05, "momentum": 0.9}


class MaxSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, maximize=False):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, momentum=momentum, maximize=maximize))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad  # the bug: -p.grad when group["maximize"]
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    d = state["momentum_buffer"]
                p.add_(d, alpha=-group["lr"])
        return loss
