"""Adam over a tuple of arrays whose bias correction multiplies instead of dividing: ``adam(weights, dweights, ms, vs, step)``."""

import numpy as np

FINDS = ("bias-correction-inverted",)
FLAGS: dict = {}


def adam(weights, dweights, ms, vs, step, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    out = []
    for j in range(len(weights)):
        ms[j] = b1 * ms[j] + (1 - b1) * dweights[j]
        vs[j] = b2 * vs[j] + (1 - b2) * np.square(dweights[j])
        mhat = ms[j] * (1 - b1**step)
        vhat = vs[j] * (1 - b2**step)
        out.append(weights[j] - learning_rate * mhat / (np.sqrt(vhat) + eps))
    return tuple(out)
