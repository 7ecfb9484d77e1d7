"""The classic course RMSprop with both of its bugs, exactly the signature found in the course.

``update_parameters(parameters, gradients, V, S, batch_size, t, learning_rate, reg_param)``:
layers from 0, ``V`` unused, beta2 = 0.999 hard-coded. The L2 term is added to the squared
gradient (S can go negative: NaN from the square root) and epsilon is added after the division.
"""

import numpy as np

FINDS = ("non-square-term-in-second-moment", "eps-outside-denominator")
FLAGS = {"arg": {"batch_size": 32, "reg_param": 0.5}}


def update_parameters(parameters, gradients, V, S, batch_size, t, learning_rate, reg_param):
    beta2 = 0.999
    epsilon = 1e-8
    L = len(parameters) // 2
    for i in range(L):
        reg = (reg_param / batch_size) * parameters["W" + str(i)]
        S["dW" + str(i)] = beta2 * S["dW" + str(i)] + (1 - beta2) * (
            np.square(gradients["dW" + str(i)]) + reg
        )
        S["db" + str(i)] = beta2 * S["db" + str(i)] + (1 - beta2) * np.square(gradients["db" + str(i)])
        dW = gradients["dW" + str(i)] + reg
        parameters["W" + str(i)] = parameters["W" + str(i)] - learning_rate * (
            dW / np.sqrt(S["dW" + str(i)]) + epsilon
        )
        parameters["b" + str(i)] = parameters["b" + str(i)] - learning_rate * (
            gradients["db" + str(i)] / np.sqrt(S["db" + str(i)]) + epsilon
        )
    return parameters, V, S
