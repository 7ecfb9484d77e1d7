"""Adam keyed by name with beta1 and beta2 swapped (each moment uses the other's rate); ``step()`` advances time."""

import numpy as np

FINDS = ("decay-rates-swapped",)
FLAGS: dict = {}


class Adam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.iteration = 1
        self.cache = {}

    def update(self, param, grad, name):
        m, v = self.cache.get(name, (np.zeros_like(param), np.zeros_like(param)))
        m = self.beta2 * m + (1 - self.beta2) * grad
        v = self.beta1 * v + (1 - self.beta1) * grad**2
        self.cache[name] = (m, v)
        mhat = m / (1 - self.beta2**self.iteration)
        vhat = v / (1 - self.beta1**self.iteration)
        param -= self.lr * mhat / (np.sqrt(vhat) + self.eps)
        return param

    def step(self):
        self.iteration += 1
