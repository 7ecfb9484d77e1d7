"""The guard: invariant checks inside a user's training loop.

:class:`Guard` checks one step at a time; :func:`guarded` wraps an update function so that
each call is checked; :func:`trap` turns floating-point warnings into errors that name the
array that produced them; :func:`watch` guards a ``torch.optim.Optimizer`` through its step hooks.
"""

from __future__ import annotations

from ._config import MODES as MODES
from ._guard import Guard as Guard
from ._guard import guarded as guarded
from ._sampling import Snapshot as Snapshot
from ._trap import trap as trap
from ._watch import Watch as Watch
from ._watch import torch_rule as torch_rule
from ._watch import watch as watch

__all__ = ["MODES", "Guard", "Snapshot", "Watch", "guarded", "torch_rule", "trap", "watch"]
