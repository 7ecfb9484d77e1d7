"""Course momentum (the EMA form ``v = beta*v + (1-beta)*dW``) over layers 1..L, returning only the parameters."""

FINDS = ()
FLAGS: dict = {}


def update_parameters_with_momentum(parameters, grads, v, beta=0.9, learning_rate=0.01):
    n_layers = len(parameters) // 2
    for layer in range(1, n_layers + 1):
        for kind in ("W", "b"):
            key = "d" + kind + str(layer)
            v[key] = beta * v[key] + (1 - beta) * grads[key]
            parameters[kind + str(layer)] = parameters[kind + str(layer)] - learning_rate * v[key]
    return parameters
