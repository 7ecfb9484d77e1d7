"""A jax-style Nesterov-less momentum triple ``sgd_momentum(step_size, mass)`` that steps with the raw gradient."""

import numpy as np

FINDS = ("momentum-not-applied",)
FLAGS: dict = {}


def sgd_momentum(step_size=0.01, mass=0.9):
    def init_fun(x0):
        return (x0, np.zeros_like(x0))

    def update_fun(i, g, opt_state):
        x, v = opt_state
        v = mass * v + g
        return (x - step_size * g, v)

    def get_params(opt_state):
        x, _ = opt_state
        return x

    return init_fun, update_fun, get_params
