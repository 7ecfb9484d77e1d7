"""An object-style Adam whose step counter is a *class* attribute, shared by every instance.

TARGET = "Adam"; rule adam; expected findings: ``nondeterministic`` (a second optimizer starts at
the first one's step) and a wrong bias correction from the second trajectory on.
"""

from __future__ import annotations

import numpy as np

TARGET = "Adam"


class Adam:
    t = 0  # BUG: class attribute; self.t += 1 below rebinds per instance, but Adam.t is what is read

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        Adam.t += 1
        t = Adam.t
        for k, p in params.items():
            g = grads[k]
            self.m[k] = m = self.beta1 * self.m.get(k, np.zeros_like(p)) + (1 - self.beta1) * g
            self.v[k] = v = self.beta2 * self.v.get(k, np.zeros_like(p)) + (1 - self.beta2) * g * g
            params[k] = p - self.lr * (m / (1 - self.beta1**t)) / (
                np.sqrt(v / (1 - self.beta2**t)) + self.eps
            )
