"""Reference update rules: ``get(name, **hyper) -> Rule`` and ``names()``.

Each rule is an immutable value with ``init(params) -> state`` and
``step(params, grads, state) -> (new_params, new_state)``. Hyperparameter names
and defaults are torch's (``betas`` split into ``beta1``/``beta2``); conventions
that published implementations differ on are explicit keywords.

Examples:
    >>> import numpy as np, optcheck
    >>> rule = optcheck.rules.get("rmsprop", lr=0.01, alpha=0.9)
    >>> params = {"W1": np.ones((2, 3)), "b1": np.zeros(2)}
    >>> grads = {"W1": np.full((2, 3), 0.5), "b1": np.ones(2)}
    >>> state = rule.init(params)
    >>> params, state = rule.step(params, grads, state)
    >>> state["step"], sorted(state)
    (1, ['square_avg', 'step'])
"""

from __future__ import annotations

import difflib
from typing import Any

from .._core.errors import UsageError, UsageTypeError
from . import naming as naming
from ._base import DEFAULT_OPS as DEFAULT_OPS
from ._base import MONOTONE_ROLES as MONOTONE_ROLES
from ._base import NONNEGATIVE_ROLES as NONNEGATIVE_ROLES
from ._base import ROLES as ROLES
from ._base import Hyper as Hyper
from ._base import Ops as Ops
from ._base import Rule as Rule
from .adadelta import Adadelta as Adadelta
from .adafactor import Adafactor as Adafactor
from .adagrad import Adagrad as Adagrad
from .adam import Adam as Adam
from .adam import AdamW as AdamW
from .adamax import Adamax as Adamax
from .asgd import ASGD as ASGD
from .lion import Lion as Lion
from .nadam import NAdam as NAdam
from .radam import RAdam as RAdam
from .rmsprop import RMSprop as RMSprop
from .rprop import Rprop as Rprop
from .sgd import SGD as SGD

_REGISTRY: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (
        SGD,
        Adagrad,
        RMSprop,
        Adadelta,
        Adam,
        AdamW,
        Adamax,
        NAdam,
        RAdam,
        ASGD,
        Rprop,
        Adafactor,
        Lion,
    )
}


def names() -> list[str]:
    """The names of every reference rule, sorted."""
    return sorted(_REGISTRY)


def rule_class(name: str) -> type[Rule]:
    """The class of the rule called ``name``; ``ValueError`` listing the valid names otherwise."""
    if not isinstance(name, str):
        raise UsageTypeError(f"rule name must be a string, got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown rule {name!r}; expected one of {names()}.{hint}")
    return _REGISTRY[key]


def get(name: str, **hyper: Any) -> Rule:
    """The reference rule ``name`` with hyperparameters ``hyper`` (torch's names and defaults).

    Unknown hyperparameter names and out-of-range values raise ``ValueError`` naming
    the parameter, the value and the valid range. torch's tuple arguments are accepted
    as shorthands: ``betas=(beta1, beta2)``, and for rprop ``etas=(etaminus, etaplus)``
    and ``step_sizes=(step_size_min, step_size_max)``, for adafactor ``eps=(eps1, eps2)``.
    The usual aliases are accepted too (``learning_rate``, ``epsilon``, ``b1``, ``beta`` for
    RMSprop's decay...: the table of :mod:`optcheck.rules.naming`); two names of the same
    hyperparameter must agree.

    Examples:
        >>> import optcheck
        >>> optcheck.rules.get("adam", betas=(0.9, 0.99)).beta2
        0.99
        >>> optcheck.rules.get("rmsprop", learning_rate=0.01, beta=0.9).alpha
        0.9
        >>> optcheck.rules.get("adam", beta1=1.0)
        Traceback (most recent call last):
        ...
        ValueError: adam: beta1=1.0 is out of range; expected a value in [0, 1)
    """
    cls = rule_class(name)
    return cls(**cls.normalise_hyper(naming.normalise_hyper(cls, hyper)))


__all__ = [
    "ASGD",
    "DEFAULT_OPS",
    "MONOTONE_ROLES",
    "NONNEGATIVE_ROLES",
    "ROLES",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Hyper",
    "Lion",
    "NAdam",
    "Ops",
    "RAdam",
    "RMSprop",
    "Rprop",
    "Rule",
    "get",
    "names",
    "naming",
    "rule_class",
]
