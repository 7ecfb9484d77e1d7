"""A ``torch.optim.Optimizer`` Adam that counts steps in a Python attribute, outside ``self.state``.

``state_dict()`` does not carry the counter, so an optimizer rebuilt with ``load_state_dict()``
restarts the bias correction at t = 1 while its moments are already warm.

TARGET = "CountingAdam"; rule adam; expected finding: ``torch-state-dict`` (only after a reload).
"""

from __future__ import annotations

import torch

TARGET = "CountingAdam"
RULE = "adam"
HYPER: dict[str, object] = {"lr": 0.01}


class CountingAdam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):  # type: ignore[no-untyped-def]
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self.t = 0  # the bug: the step belongs in self.state[p]["step"]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.t += 1
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["exp_avg"].lerp_(p.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (state["exp_avg_sq"] / (1 - beta2**self.t)).sqrt().add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**self.t))
        return loss
