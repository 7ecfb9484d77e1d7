"""A TF1/timm-``RMSpropTF``-style RMSprop object whose square average starts at 1 (ε outside the root here).

TARGET = "RMSPropTF"; rule rmsprop with ``--hyper alpha=0.9``; expected verdict: pass, with the
convention ``square-avg-init-one``.
"""

from __future__ import annotations

import numpy as np

TARGET = "RMSPropTF"
RULE = "rmsprop"
HYPER: dict[str, object] = {"alpha": 0.9}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "square-avg-init-one"


class RMSPropTF:
    def __init__(self, lr=1e-2, decay=0.9, epsilon=1e-8):  # type: ignore[no-untyped-def]
        self.lr, self.decay, self.epsilon = lr, decay, epsilon
        self.ms: dict[str, np.ndarray] = {}

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        for name, w in params.items():
            g = grads[name]
            if name not in self.ms:
                self.ms[name] = np.ones_like(w)  # TF1 initialises the rms slot with ones
            self.ms[name] = self.decay * self.ms[name] + (1.0 - self.decay) * np.square(g)
            params[name] = w - self.lr * g / (np.sqrt(self.ms[name]) + self.epsilon)
