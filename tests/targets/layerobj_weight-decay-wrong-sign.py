"""Adagrad on layer objects with L2 decay added with the wrong sign: ``opt.update(layer)``."""

import numpy as np

FINDS = ("weight-decay-wrong-sign",)
FLAGS: dict = {}


class Adagrad:
    def __init__(self, lr=0.01, weight_decay=0.1, eps=1e-10):
        self.lr, self.weight_decay, self.eps = lr, weight_decay, eps

    def update(self, layer):
        for name in ("W", "b"):
            g = getattr(layer, "d" + name) - self.weight_decay * getattr(layer, name)
            acc = getattr(layer, "G" + name, 0.0) + g * g
            setattr(layer, "G" + name, acc)
            setattr(layer, name, getattr(layer, name) - self.lr * g / (np.sqrt(acc) + self.eps))
