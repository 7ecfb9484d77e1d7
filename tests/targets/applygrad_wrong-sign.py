"""Momentum over tuples that climbs the gradient: ``opt.apply_grad(grad, args)``."""

import numpy as np

FINDS = ("wrong-sign",)
FLAGS: dict = {}


class Momentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum = lr, momentum
        self.vel = None

    def apply_grad(self, grad, args):
        if self.vel is None:
            self.vel = [np.zeros_like(a) for a in args]
        self.vel = [self.momentum * v + g for v, g in zip(self.vel, grad, strict=True)]
        return tuple(a + self.lr * v for a, v in zip(args, self.vel, strict=True))
