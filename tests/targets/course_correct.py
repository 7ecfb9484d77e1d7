"""The classic course RMSprop, fixed: ``update_parameters(parameters, gradients, V, S, batch_size, t, learning_rate, reg_param)``.

Layers are numbered from 0 (``W0, b0, W1, b1``), ``V`` is handed in by the training loop but
never used, beta2 = 0.999 and epsilon are written in the body, and the L2 term
``reg_param / batch_size * W`` is added to the gradient before it is squared.
Audited as ``python -m optcheck audit tests/targets/course_correct.py --arg batch_size=32 --arg reg_param=0.5``.
"""

import numpy as np

FINDS = ()
FLAGS = {"arg": {"batch_size": 32, "reg_param": 0.5}}


def update_parameters(parameters, gradients, V, S, batch_size, t, learning_rate, reg_param):
    beta2 = 0.999
    epsilon = 1e-8
    L = len(parameters) // 2
    for i in range(L):
        dW = gradients["dW" + str(i)] + (reg_param / batch_size) * parameters["W" + str(i)]
        db = gradients["db" + str(i)]
        S["dW" + str(i)] = beta2 * S["dW" + str(i)] + (1 - beta2) * np.square(dW)
        S["db" + str(i)] = beta2 * S["db" + str(i)] + (1 - beta2) * np.square(db)
        parameters["W" + str(i)] -= learning_rate * dW / (np.sqrt(S["dW" + str(i)]) + epsilon)
        parameters["b" + str(i)] -= learning_rate * db / (np.sqrt(S["db" + str(i)]) + epsilon)
    return parameters, V, S
