"""School-style RMSProp with epsilon after the division: ``update_variables_RMSProp(alpha, beta2, epsilon, var, grad, s)``."""

import numpy as np

FINDS = ("eps-outside-denominator",)
FLAGS: dict = {}


def update_variables_RMSProp(alpha, beta2, epsilon, var, grad, s):
    s_new = beta2 * s + (1 - beta2) * np.square(grad)
    var_new = var - alpha * (grad / np.sqrt(s_new) + epsilon)
    return var_new, s_new
