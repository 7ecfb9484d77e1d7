"""Adam object over dicts updating in place, writing the bias-corrected moments back into its state."""

import numpy as np

FINDS = ("bias-correction-compounds",)
FLAGS: dict = {}


class AdamOptimizer:
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.lr, self.b1, self.b2, self.eps = learning_rate, beta_1, beta_2, epsilon
        self.m, self.v, self.t = {}, {}, 0

    def update(self, params, grads):
        self.t += 1
        for name in params:
            m = self.m.get(name, np.zeros_like(params[name]))
            v = self.v.get(name, np.zeros_like(params[name]))
            m = self.b1 * m + (1 - self.b1) * grads[name]
            v = self.b2 * v + (1 - self.b2) * grads[name] ** 2
            self.m[name] = m = m / (1 - self.b1**self.t)
            self.v[name] = v = v / (1 - self.b2**self.t)
            params[name] -= self.lr * m / (np.sqrt(v) + self.eps)
