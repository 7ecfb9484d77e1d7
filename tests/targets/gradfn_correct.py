"""Nesterov-free momentum that asks for the gradient itself: ``opt.update(w, grad_func)``."""

FINDS = ()
FLAGS: dict = {}


class HeavyBall:
    def __init__(self, lr=0.05, momentum=0.8):
        self.lr, self.momentum = lr, momentum
        self.buf = None

    def update(self, w, grad_func):
        g = grad_func(w)
        self.buf = g if self.buf is None else self.momentum * self.buf + g
        return w - self.lr * self.buf
