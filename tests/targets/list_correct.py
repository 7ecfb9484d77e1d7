"""SGD with (torch-style) momentum over lists of arrays: ``sgd_momentum(params, grads, bufs, lr=0.05, momentum=0.9)``."""

FINDS = ()
FLAGS: dict = {}


def sgd_momentum(params, grads, bufs, lr=0.05, momentum=0.9):
    new_params = []
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        bufs[i] = momentum * bufs[i] + g
        new_params.append(p - lr * bufs[i])
    return new_params, bufs
