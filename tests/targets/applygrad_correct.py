"""An optimizer over a tuple of arrays: ``args = opt.apply_grad(grad, args)`` with ``grad`` a tuple like ``args``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class RMSProp:
    def __init__(self, lr=1e-3, rho=0.9, eps=1e-6):
        self.lr, self.rho, self.eps = lr, rho, eps
        self.ms = None

    def apply_grad(self, grad, args):
        if self.ms is None:
            self.ms = tuple(np.zeros_like(a) for a in args)
        self.ms = tuple(self.rho * m + (1 - self.rho) * g**2 for m, g in zip(self.ms, grad, strict=True))
        return tuple(
            a - self.lr * g / (np.sqrt(m) + self.eps) for a, g, m in zip(args, grad, self.ms, strict=True)
        )
