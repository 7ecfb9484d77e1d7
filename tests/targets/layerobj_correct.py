"""SGD with momentum on layer objects: ``opt.update(layer)`` reads ``layer.W``/``layer.dW`` and ``layer.b``/``layer.db``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class SGD:
    def __init__(self, learning_rate=0.01, momentum=0.9):
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocities = {}

    def update(self, layer):
        if id(layer) not in self.velocities:
            self.velocities[id(layer)] = (np.zeros_like(layer.W), np.zeros_like(layer.b))
        vw, vb = self.velocities[id(layer)]
        vw = self.momentum * vw + layer.dW
        vb = self.momentum * vb + layer.db
        self.velocities[id(layer)] = (vw, vb)
        layer.W = layer.W - self.learning_rate * vw
        layer.b = layer.b - self.learning_rate * vb
