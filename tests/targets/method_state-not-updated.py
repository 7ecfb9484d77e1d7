"""``Class.method``: ``Trainer.adagrad_step`` whose accumulator is rebound locally and never stored."""

import numpy as np

FINDS = ("state-not-updated",)
FLAGS = {"name": "Trainer.adagrad_step"}


class Trainer:
    def __init__(self, lr=0.01, eps=1e-10):
        self.lr, self.eps = lr, eps
        self.acc = {}

    def plain_step(self, params, grads):
        return {k: params[k] - self.lr * grads[k] for k in params}

    def adagrad_step(self, params, grads):
        new = {}
        for k in params:
            acc = self.acc.setdefault(k, np.zeros_like(params[k]))
            acc = acc + grads[k] ** 2
            new[k] = params[k] - self.lr * grads[k] / (np.sqrt(acc) + self.eps)
        return new
