"""Adagrad object over dicts: ``opt.update(params, grads)`` returns a new dict."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class Adagrad:
    def __init__(self, lr=0.01, eps=1e-10):
        self.lr = lr
        self.eps = eps
        self.G = {}

    def update(self, params, grads):
        out = {}
        for k in params:
            self.G[k] = self.G.get(k, 0.0) + grads[k] ** 2
            out[k] = params[k] - self.lr * grads[k] / (np.sqrt(self.G[k]) + self.eps)
        return out
