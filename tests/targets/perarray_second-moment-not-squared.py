"""Per-array RMSprop object updating in place: ``opt.update(param, dparam)``; its cache averages |g|."""

import numpy as np

FINDS = ("second-moment-not-squared",)
FLAGS: dict = {}


class RMSProp:
    def __init__(self, learning_rate=0.001, decay=0.9, epsilon=1e-7):
        self.learning_rate, self.decay, self.epsilon = learning_rate, decay, epsilon
        self.cache = 0.0

    def update(self, param, dparam):
        self.cache = self.decay * self.cache + (1 - self.decay) * np.abs(dparam)
        param -= self.learning_rate * dparam / (np.sqrt(self.cache) + self.epsilon)
