"""A ``torch.optim.Optimizer`` SGD that accepts ``nesterov=True`` and applies plain momentum.

TARGET = "MySGD"; rule sgd with ``--hyper lr=0.1 --hyper momentum=0.9 --hyper nesterov=True``;
expected finding: ``nesterov-missing-lookahead``.
"""

from __future__ import annotations

import torch

TARGET = "MySGD"
RULE = "sgd"
HYPER: dict[str, object] = {"lr": 0.1, "momentum": 0.9, "nesterov": True}
ARGS: dict[str, object] = {}
EXPECT = ("nesterov-missing-lookahead",)


class MySGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, nesterov=False):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = p.grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(p.grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])  # BUG: nesterov ignored
        return None
