"""RMSprop over a dict keyed like the parameters, updating in place and returning nothing.

TARGET = "rmsprop_update"; rule rmsprop; expected verdict: pass. Exercises the key form
``grads["W1"]`` (not ``grads["dW1"]``) and the in-place convention.
"""

from __future__ import annotations

import numpy as np

TARGET = "rmsprop_update"


def rmsprop_update(params, grads, cache, lr=0.01, decay_rate=0.99, eps=1e-8):  # type: ignore[no-untyped-def]
    for k in params:
        cache[k] *= decay_rate
        cache[k] += (1 - decay_rate) * grads[k] ** 2
        params[k] -= lr * grads[k] / (np.sqrt(cache[k]) + eps)
