"""Array helpers shared by every layer: namespace, shape, copy, conversion to numpy.

Arrays of any array-API library are accepted (numpy, torch, array-api-strict, cupy...);
torch is recognised through ``sys.modules`` and never imported here.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from array_api_compat import array_namespace

__all__ = ["copy", "is_array", "is_torch", "namespace", "shape", "to_numpy"]

_NAMESPACES: dict[type, Any] = {}


def is_array(x: object) -> bool:
    """Whether ``x`` looks like an array of some array library (has ``shape`` and ``dtype``, is not a class)."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


def is_torch(x: object) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def namespace(x: Any) -> Any:
    """The array namespace of ``x`` (numpy for numpy arrays), cached by type; ``TypeError`` for a non-array."""
    t = type(x)
    if t is np.ndarray:
        return np
    xp = _NAMESPACES.get(t)
    if xp is None:
        xp = _NAMESPACES[t] = array_namespace(x)
    return xp


def shape(x: Any) -> tuple[int, ...]:
    """The shape of ``x`` as a tuple of ints (``()`` for something without a shape)."""
    if type(x) is np.ndarray:
        return x.shape  # type: ignore[no-any-return]
    return tuple(int(d) for d in getattr(x, "shape", ()))


def copy(x: Any) -> Any:
    """A copy of an array in its own library (torch tensors detached); a numpy copy of anything else."""
    if type(x) is np.ndarray:
        return x.copy()
    if is_torch(x):
        return x.detach().clone()
    if is_array(x):
        return namespace(x).asarray(x, copy=True)
    return np.array(x, copy=True)


def to_numpy(x: Any) -> np.ndarray:
    """``x`` (numpy array, torch tensor, array-API array or number) as a numpy array, without copying when possible.

    torch tensors are detached and moved to the CPU; bfloat16 is widened to float32
    (numpy has no bfloat16). torch is recognised through ``sys.modules``, never imported.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return np.asarray(t.numpy())
    return np.asarray(x)
