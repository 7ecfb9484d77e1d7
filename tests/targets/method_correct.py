"""A ``Class.method`` target: the optimizer class holds several update rules; audit ``Optimizers.rmsprop``."""

import numpy as np

FINDS = ()
FLAGS = {"name": "Optimizers.rmsprop"}


class Optimizers:
    def __init__(self, lr=0.01, beta=0.9, eps=1e-8):
        self.lr, self.beta, self.eps = lr, beta, eps
        self.s = {}

    def sgd(self, params, grads):
        return {k: params[k] - self.lr * grads[k] for k in params}

    def rmsprop(self, params, grads):
        for k in params:
            self.s[k] = self.beta * self.s.get(k, 0.0) + (1 - self.beta) * grads[k] ** 2
            params[k] = params[k] - self.lr * grads[k] / (np.sqrt(self.s[k]) + self.eps)
        return params
