"""The guard's configuration: modes, the environment override, the rule and the key prefixes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .. import rules as _rules
from .._core.errors import UsageError, UsageTypeError
from .._core.tree import Tree
from ..invariants import (
    Violation,
)
from ..rules import Rule, naming

MODES = ("raise", "warn", "log", "off")
"""The modes of a guard by name (a guard also accepts a callable taking the list of violations)."""


ENV_VAR = "OPTCHECK_GUARD"


logger = logging.getLogger("optcheck")


def _env_mode() -> str | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value not in MODES:
        raise UsageError(f"{ENV_VAR}={raw!r} is invalid; expected one of {list(MODES)}")
    return value


def _check_mode(mode: Any) -> str | Callable[[list[Violation]], Any]:
    if callable(mode):
        return mode  # type: ignore[no-any-return]
    if isinstance(mode, str) and mode.lower() in MODES:
        return mode.lower()
    raise UsageError(
        f"mode={mode!r} is invalid; expected one of {list(MODES)} or a callable taking the violations"
    )


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside optcheck (for warnings.warn called from here)."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _resolve_rule(rule: str | Rule | None, hyper: Mapping[str, Any]) -> Rule | None:
    if rule is None:
        if hyper:
            raise UsageError(
                f"hyperparameters {sorted(hyper)} were given without a rule; pass rule=<name> "
                f"(one of {_rules.names()})"
            )
        return None
    if isinstance(rule, Rule):
        return rule.replace(**naming.normalise_hyper(rule, hyper)) if hyper else rule
    if isinstance(rule, str):
        return _rules.get(rule, **hyper)
    raise UsageTypeError(
        f"rule must be a rule name (one of {_rules.names()}), a Rule or None, got {type(rule).__name__}"
    )


def _detect_prefix(params: Tree, tree: Tree) -> str:
    """``"d"`` when ``tree`` is keyed ``dW1, db1`` for parameters ``W1, b1`` (the course layout), else ``""``."""
    if not isinstance(params, Mapping) or not isinstance(tree, Mapping):
        return ""
    return naming.key_prefix(params, tree) or ""


def _rekey(tree: Tree, prefix: str) -> Tree:
    if not prefix or not isinstance(tree, Mapping):
        return tree
    return naming.rekey(tree, prefix)
