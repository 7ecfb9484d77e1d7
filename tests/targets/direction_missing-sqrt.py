"""Adagrad that returns the signed update to add (``w += delta``) and divides by the sum, not its root."""

FINDS = ("missing-sqrt",)
FLAGS: dict = {}


def adagrad_delta(grad, accum, lr=0.01, eps=1e-10):
    accum = accum + grad**2
    delta = -lr * grad / (accum + eps)
    return delta, accum
