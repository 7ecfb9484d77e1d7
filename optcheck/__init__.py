"""optcheck: numerical debugging of optimizers and gradients.

Reference update rules (:mod:`optcheck.rules`), invariant checkers and a guard for
training loops, a finite-difference gradient checker, Hypothesis strategies and an
audit that runs your own update function against the reference and names the bug.

``import optcheck`` is light: hypothesis, pytest, torch and matplotlib are imported
only by the parts that use them.
"""

from __future__ import annotations

from . import rules as rules

__version__ = "0.1.0"

__all__ = ["__version__", "rules"]
