"""Adam per layer whose correction uses (1 - beta)**t instead of 1 - beta**t."""

import numpy as np

FINDS = ("bias-correction-wrong-power",)
FLAGS: dict = {}


class AdamOptim:
    def __init__(self, eta=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.state = {"mw": 0.0, "vw": 0.0, "mb": 0.0, "vb": 0.0}
        self.beta1, self.beta2, self.epsilon, self.eta = beta1, beta2, epsilon, eta

    def update(self, t, w, b, dw, db):
        s, b1, b2 = self.state, self.beta1, self.beta2
        s["mw"] = b1 * s["mw"] + (1 - b1) * dw
        s["mb"] = b1 * s["mb"] + (1 - b1) * db
        s["vw"] = b2 * s["vw"] + (1 - b2) * dw * dw
        s["vb"] = b2 * s["vb"] + (1 - b2) * db * db
        c1, c2 = 1 - (1 - b1) ** t, 1 - (1 - b2) ** t
        w = w - self.eta * (s["mw"] / c1) / (np.sqrt(s["vw"] / c2) + self.epsilon)
        b = b - self.eta * (s["mb"] / c1) / (np.sqrt(s["vb"] / c2) + self.epsilon)
        return w, b
