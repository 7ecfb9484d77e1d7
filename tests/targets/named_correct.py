"""Adam keyed by name: ``opt.update(param, grad, name)`` for each array, then ``opt.step()`` advances time."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class Adam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 1
        self.m, self.v = {}, {}

    def update(self, param, grad, name):
        if name not in self.m:
            self.m[name] = np.zeros_like(param)
            self.v[name] = np.zeros_like(param)
        self.m[name] = self.beta1 * self.m[name] + (1 - self.beta1) * grad
        self.v[name] = self.beta2 * self.v[name] + (1 - self.beta2) * grad**2
        mhat = self.m[name] / (1 - self.beta1**self.t)
        vhat = self.v[name] / (1 - self.beta2**self.t)
        return param - self.lr * mhat / (np.sqrt(vhat) + self.eps)

    def step(self):
        self.t += 1
