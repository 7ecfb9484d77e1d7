"""A jax.example_libraries-style optimizer: ``momentum(step_size, mass)`` returns ``(init, update, get_params)``."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


def momentum(step_size=0.01, mass=0.9):
    def init(x0):
        return x0, np.zeros_like(x0)

    def update(i, g, state):
        x, velocity = state
        velocity = mass * velocity + g
        x = x - step_size * velocity
        return x, velocity

    def get_params(state):
        return state[0]

    return init, update, get_params
