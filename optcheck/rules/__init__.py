"""Reference update rules: ``get(name, **hyper) -> Rule`` and ``names()``.

Each rule is an immutable value with ``init(params) -> state`` and
``step(params, grads, state) -> (new_params, new_state)``. Hyperparameter names
and defaults are torch's (``betas`` split into ``beta1``/``beta2``); conventions
that published implementations differ on are explicit keywords.
"""

from __future__ import annotations

import difflib
from typing import Any

from ._base import DEFAULT_OPS as DEFAULT_OPS
from ._base import Hyper as Hyper
from ._base import Ops as Ops
from ._base import Rule as Rule
from .adam import Adam as Adam
from .adam import AdamW as AdamW

_REGISTRY: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (
        Adam,
        AdamW,
    )
}


def names() -> list[str]:
    """The names of every reference rule, sorted."""
    return sorted(_REGISTRY)


def rule_class(name: str) -> type[Rule]:
    """The class of the rule called ``name``; ``ValueError`` listing the valid names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"rule name must be a string, got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown rule {name!r}; expected one of {names()}.{hint}")
    return _REGISTRY[key]


def get(name: str, **hyper: Any) -> Rule:
    """The reference rule ``name`` with hyperparameters ``hyper`` (torch's names and defaults).

    Unknown hyperparameter names and out-of-range values raise ``ValueError`` naming
    the parameter, the value and the valid range. ``betas=(b1, b2)`` is accepted as
    a shorthand for ``beta1``/``beta2``.
    """
    cls = rule_class(name)
    if "betas" in hyper:
        betas = hyper.pop("betas")
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"{cls.name}: betas={betas!r} is invalid; expected a pair (beta1, beta2)") from None
        hyper.setdefault("beta1", b1)
        hyper.setdefault("beta2", b2)
    valid = [s.name for s in cls.hyper_specs()]
    unknown = [k for k in hyper if k not in valid]
    if unknown:
        raise ValueError(
            f"{cls.name}: unknown hyperparameter(s) {unknown}; {cls.name} takes {valid}"
        )
    return cls(**hyper)


__all__ = ["DEFAULT_OPS", "Adam", "AdamW", "Hyper", "Ops", "Rule", "get", "names", "rule_class"]
