"""cs231n-style RMSprop updating ``w`` in place: ``rmsprop(x, dx, config=None) -> (x, config)``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


def rmsprop(x, dx, config=None):
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(x))
    cache = config["cache"]
    cache *= config["decay_rate"]
    cache += (1 - config["decay_rate"]) * dx**2
    x -= config["learning_rate"] * dx / (np.sqrt(cache) + config["epsilon"])
    return x, config
