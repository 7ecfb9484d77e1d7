"""optcheck: numerical debugging of optimizers and gradients.

* :mod:`optcheck.rules`: reference update rules (sgd, adam, rmsprop, ...) proven equal to torch.optim;
* :mod:`optcheck.invariants`, :class:`Guard`, :func:`guarded`, :func:`trap`: invariant checks
  that name the array, the step, the index and the likely cause;
* :func:`check_gradient`, :func:`check_vjp`, :func:`check_layer`, :func:`check_torch`: a
  finite-difference gradient checker (for losses, layers in the (out, cache) convention and
  torch autograd);
* :mod:`optcheck.strategies`: Hypothesis strategies for optimizer inputs;
* :mod:`optcheck.testing` and ``python -m optcheck audit``: audit your own update function.

``import optcheck`` is light: the names below are loaded on first use, and hypothesis,
pytest, torch and matplotlib are imported only by the parts that use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import rules as rules

__version__ = "0.1.0"

# public name -> module that defines it (loaded lazily, on first attribute access)
_LAZY: dict[str, str] = {
    "Error": "optcheck._core.errors",
    "UsageError": "optcheck._core.errors",
    "Violation": "optcheck.invariants",
    "InvariantError": "optcheck.invariants",
    "InvariantWarning": "optcheck.invariants",
    "Guard": "optcheck.guard",
    "guarded": "optcheck.guard",
    "trap": "optcheck.guard",
    "watch": "optcheck.guard",
    "check_gradient": "optcheck.gradcheck",
    "assert_gradient": "optcheck.gradcheck",
    "check_vjp": "optcheck.gradcheck",
    "check_layer": "optcheck.gradcheck",
    "check_torch": "optcheck.gradcheck",
    "GradientError": "optcheck.gradcheck",
    "GradientReport": "optcheck.gradcheck",
}
_SUBMODULES = ("invariants", "guard", "gradcheck", "strategies", "testing", "audit", "diagnose")

if TYPE_CHECKING:
    from . import gradcheck as gradcheck
    from . import invariants as invariants
    from ._core.errors import Error as Error
    from ._core.errors import UsageError as UsageError
    from .gradcheck import GradientError as GradientError
    from .gradcheck import GradientReport as GradientReport
    from .gradcheck import assert_gradient as assert_gradient
    from .gradcheck import check_gradient as check_gradient
    from .gradcheck import check_layer as check_layer
    from .gradcheck import check_torch as check_torch
    from .gradcheck import check_vjp as check_vjp
    from .guard import Guard as Guard
    from .guard import guarded as guarded
    from .guard import trap as trap
    from .guard import watch as watch
    from .invariants import InvariantError as InvariantError
    from .invariants import InvariantWarning as InvariantWarning
    from .invariants import Violation as Violation


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"optcheck.{name}")
    raise AttributeError(f"module 'optcheck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBMODULES])


__all__ = [
    "Error",
    "GradientError",
    "GradientReport",
    "Guard",
    "InvariantError",
    "InvariantWarning",
    "UsageError",
    "Violation",
    "__version__",
    "assert_gradient",
    "check_gradient",
    "check_layer",
    "check_torch",
    "check_vjp",
    "guarded",
    "rules",
    "trap",
    "watch",
]
