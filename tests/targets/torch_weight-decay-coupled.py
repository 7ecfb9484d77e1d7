"""An AdamW written as Adam with the decay added to the gradient (L2), as a ``torch.optim.Optimizer``.

TARGET = "MyAdamW"; rule adamw (weight_decay 0.01 by default) with ``--hyper lr=0.01``; expected
finding: ``weight-decay-coupled``.
"""

from __future__ import annotations

import math

import torch

TARGET = "MyAdamW"
RULE = "adamw"
HYPER: dict[str, object] = {"lr": 0.01}
ARGS: dict[str, object] = {}
EXPECT = ("weight-decay-coupled",)


class MyAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=group["weight_decay"])  # BUG: L2, not decoupled decay
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - b2**t)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - b1**t))
        return None
