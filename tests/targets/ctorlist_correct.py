"""RMSprop given the parameter list at construction: ``opt = RMSprop(params, lr)``; ``opt.update_params(params, grads)``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class RMSprop:
    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.sq = [np.zeros_like(p) for p in params]

    def update_params(self, params, grads):
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self.sq[i] = self.alpha * self.sq[i] + (1 - self.alpha) * g * g
            p -= self.lr * g / (np.sqrt(self.sq[i]) + self.eps)
