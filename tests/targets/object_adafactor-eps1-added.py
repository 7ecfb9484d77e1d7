"""A transformers/fairseq-style Adafactor (no first moment): eps1 is added to g² before the averages.

TARGET = "Adafactor"; rule adafactor with ``--hyper eps1=1e-30``; expected verdict: pass, with the
convention ``adafactor-eps1-added``.
"""

from __future__ import annotations

import math

import numpy as np

TARGET = "Adafactor"
RULE = "adafactor"
HYPER: dict[str, object] = {"eps1": 1e-30}
ARGS: dict[str, object] = {}
EXPECT: tuple[str, ...] = ()
CONVENTION = "adafactor-eps1-added"


def _rms(x):  # type: ignore[no-untyped-def]
    return float(np.sqrt(np.mean(x * x)))


class Adafactor:
    def __init__(self, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8):  # type: ignore[no-untyped-def]
        self.eps, self.clip, self.decay_rate = eps, clip_threshold, decay_rate
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.step_count = 0

    def step(self, params, grads):  # type: ignore[no-untyped-def]
        self.step_count += 1
        t = self.step_count
        rel = min(1e-2, 1.0 / math.sqrt(t))
        beta2t = 1.0 - math.pow(t, self.decay_rate)
        for name, p in params.items():
            g = grads[name]
            lr = max(self.eps[1], _rms(p)) * rel
            st = self.state.setdefault(name, {})
            update = g**2 + self.eps[0]
            if p.ndim >= 2:
                row = st.get("row", np.zeros(p.shape[:-1]))
                col = st.get("col", np.zeros(p.shape[:-2] + p.shape[-1:]))
                row = beta2t * row + (1 - beta2t) * update.mean(axis=-1)
                col = beta2t * col + (1 - beta2t) * update.mean(axis=-2)
                st["row"], st["col"] = row, col
                r = 1.0 / np.sqrt(row / row.mean(axis=-1, keepdims=True))
                c = 1.0 / np.sqrt(col)
                u = r[..., :, None] * c[..., None, :] * g
            else:
                v = st.get("v", np.zeros_like(p))
                v = beta2t * v + (1 - beta2t) * update
                st["v"] = v
                u = g / np.sqrt(v)
            u = u / max(1.0, _rms(u) / self.clip)
            params[name] = p - lr * u
