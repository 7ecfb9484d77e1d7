"""Momentum SGD given the parameters at construction whose velocity is computed but the raw gradient stepped."""

import numpy as np

FINDS = ("momentum-not-applied",)
FLAGS: dict = {}


class SGDMomentum:
    def __init__(self, parameters, learning_rate=0.01, momentum=0.9):
        self.parameters = parameters
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.buffers = [np.zeros_like(p) for p in parameters]

    def update_params(self, params, grads):
        for k in range(len(params)):
            self.buffers[k] = self.momentum * self.buffers[k] + grads[k]
            params[k] -= self.learning_rate * grads[k]
