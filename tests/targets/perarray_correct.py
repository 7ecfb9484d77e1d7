"""One optimizer object per array: ``opt = Momentum(lr, mu)``; ``w = opt.update(w, grad)`` returns the new array."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class Momentum:
    def __init__(self, lr=0.01, mu=0.9):
        self.lr = lr
        self.mu = mu
        self.velocity = None

    def update(self, w, grad):
        if self.velocity is None:
            self.velocity = np.zeros_like(w)
        self.velocity = self.mu * self.velocity - self.lr * grad
        return w + self.velocity
