"""Adam per layer: ``opt.update(t, w, b, dw, db) -> (w, b)`` (the step number is passed in)."""

import numpy as np

FINDS = ()
FLAGS: dict = {}


class AdamOptim:
    def __init__(self, eta=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.m_dw, self.v_dw = 0, 0
        self.m_db, self.v_db = 0, 0
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.eta = eta

    def update(self, t, w, b, dw, db):
        self.m_dw = self.beta1 * self.m_dw + (1 - self.beta1) * dw
        self.m_db = self.beta1 * self.m_db + (1 - self.beta1) * db
        self.v_dw = self.beta2 * self.v_dw + (1 - self.beta2) * (dw**2)
        self.v_db = self.beta2 * self.v_db + (1 - self.beta2) * (db**2)
        m_dw_corr = self.m_dw / (1 - self.beta1**t)
        m_db_corr = self.m_db / (1 - self.beta1**t)
        v_dw_corr = self.v_dw / (1 - self.beta2**t)
        v_db_corr = self.v_db / (1 - self.beta2**t)
        w = w - self.eta * (m_dw_corr / (np.sqrt(v_dw_corr) + self.epsilon))
        b = b - self.eta * (m_db_corr / (np.sqrt(v_db_corr) + self.epsilon))
        return w, b
