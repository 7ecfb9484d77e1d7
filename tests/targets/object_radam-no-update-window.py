"""The original RAdam (LiyuanLucasLiu/RAdam) with ``degenerated_to_sgd=False``: no update while N_sma < 5.

TARGET = "RAdam"; rule radam; expected verdict: pass, with the convention ``radam-no-update-window``.
The audit runs past RAdam's first rectified step (step 6) on its own.
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "RAdam"
RULE = "radam"
HYPER: dict[str, object] = {}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "radam-no-update-window"


class RAdam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, degenerated_to_sgd=False):  # type: ignore[no-untyped-def]
        self.lr, self.betas, self.eps, self.degenerated_to_sgd = lr, betas, eps, degenerated_to_sgd
        self.step_no = 0
        self.exp_avg: dict[str, np.ndarray] = {}
        self.exp_avg_sq: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.step_no += 1
        beta1, beta2 = self.betas
        t = self.step_no
        beta2_t = beta2**t
        n_sma_max = 2 / (1 - beta2) - 1
        n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
        if n_sma >= 5:
            step_size = math.sqrt(
                (1 - beta2_t)
                * (n_sma - 4)
                / (n_sma_max - 4)
                * (n_sma - 2)
                / n_sma
                * n_sma_max
                / (n_sma_max - 2)
            ) / (1 - beta1**t)
        elif self.degenerated_to_sgd:
            step_size = 1.0 / (1 - beta1**t)
        else:
            step_size = -1
        for k, p in params.items():
            g = grads[k]
            m = self.exp_avg[k] = beta1 * self.exp_avg.get(k, np.zeros_like(p)) + (1 - beta1) * g
            v = self.exp_avg_sq[k] = beta2 * self.exp_avg_sq.get(k, np.zeros_like(p)) + (1 - beta2) * g * g
            if n_sma >= 5:
                params[k] = p - step_size * self.lr * m / (np.sqrt(v) + self.eps)
            elif step_size > 0:
                params[k] = p - step_size * self.lr * m
