"""Course key matching: the pure string logic behind ``grads['dW1']`` for ``params['W1']``.

Course code (deeplearning.ai, cs230 and the many repositories that copy them) keys the
parameters ``W1, b1, W2, b2`` and the gradients ``dW1, db1, ...``; its optimizer states are
keyed either like the gradients (``v['dW1']``, ``S['db2']``) or like the parameters, and some
code keeps every state in one flat dict (``cache['cache_dW1']``, ``v_dW1``, ``VdW1``).
Layers are numbered from 1 (the course) or from 0 (``range(L)`` loops).

Everything here is string logic with no knowledge of rules or arrays; the one map from
user names to rule keys and roles (:mod:`optcheck.rules.naming`) builds on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "GRAD_PREFIX",
    "KEY_FORMS",
    "grad_key",
    "key_prefix",
    "layer_base",
    "match_keys",
    "rekey",
    "renumber",
    "split_state_key",
]

GRAD_PREFIX = "d"
"""The course prefix of a gradient key: ``dW1`` is the gradient of ``W1``."""

KEY_FORMS: tuple[tuple[str, str], ...] = (("d", "d"), ("", ""), ("d", ""), ("", "d"))
"""The (gradient prefix, state prefix) pairs course code uses, the most common first."""

_LAYER = re.compile(r"^(.*?)(\d+)$")


def grad_key(param_key: str, prefix: str = GRAD_PREFIX) -> str:
    """The key of ``param_key``'s gradient in course code: ``grad_key("W1")`` -> ``"dW1"``."""
    return prefix + param_key


def key_prefix(param_keys: Iterable[object], keys: Iterable[object]) -> str | None:
    """The prefix that turns ``param_keys`` into ``keys``: ``""``, ``"d"``, or ``None`` when neither does.

    ``key_prefix(["W1", "b1"], ["dW1", "db1"])`` is ``"d"``; identical key sets give ``""``.
    An empty ``keys`` gives ``None`` (nothing to match).
    """
    pk = set(param_keys)
    tk = list(dict.fromkeys(keys))
    if not tk:
        return None
    strs = [k for k in tk if isinstance(k, str)]
    if len(strs) != len(tk):
        return None
    if set(strs) == pk:
        return ""
    if all(k.startswith(GRAD_PREFIX) for k in strs) and {k[len(GRAD_PREFIX) :] for k in strs} == pk:
        return GRAD_PREFIX
    return None


def match_keys(param_keys: Sequence[str], keys: Iterable[object]) -> dict[str, str] | None:
    """``{key: param_key}`` when ``keys`` are ``param_keys`` with one common prefix (``""`` or ``"d"``).

    Returns ``None`` when the two sets do not line up one to one (a missing or an extra key).
    """
    keys = list(keys)
    prefix = key_prefix(param_keys, keys)
    if prefix is None:
        return None
    return {str(k): str(k)[len(prefix) :] for k in keys}


def split_state_key(key: str, param_keys: Iterable[str]) -> tuple[str, str, str] | None:
    """Split a flat state key into ``(state name, prefix, param key)``, or ``None``.

    ``cache_dW1`` -> ``("cache", "d", "W1")``; ``v_W2`` -> ``("v", "", "W2")``;
    ``VdW1`` -> ``("V", "d", "W1")``. The state name is not empty; the longest parameter key
    that fits wins (``W10`` before ``W1``), and a gradient form (``dW1``) before a bare one.
    """
    for p in sorted(set(param_keys), key=len, reverse=True):
        for prefix in (GRAD_PREFIX, ""):
            tail = prefix + p
            if not key.endswith(tail):
                continue
            head = key[: -len(tail)]
            name = head[:-1] if head.endswith("_") else head
            if name and not name.endswith("_") and not (name == GRAD_PREFIX and not prefix):
                return name, prefix, p
    return None


def layer_base(keys: Iterable[object]) -> int | None:
    """The number of the first layer in keys like ``W1, b1, W2`` (1) or ``W0, b0`` (0); ``None`` if unnumbered."""
    nums = []
    for k in keys:
        if not isinstance(k, str):
            return None
        m = _LAYER.match(k)
        if m is None or not m.group(1):
            return None
        nums.append(int(m.group(2)))
    return min(nums) if nums else None


def renumber(keys: Iterable[str], base: int) -> dict[str, str]:
    """``{key: renumbered key}`` shifting layer numbers so the first layer is ``base``.

    ``renumber(["W1", "b1", "W2"], 0)`` -> ``{"W1": "W0", "b1": "b0", "W2": "W1"}``; keys without a
    layer number keep their name.
    """
    keys = list(keys)
    current = layer_base(keys)
    if current is None:
        return {k: k for k in keys}
    shift = base - current
    out: dict[str, str] = {}
    for k in keys:
        m = _LAYER.match(k)
        assert m is not None
        out[k] = f"{m.group(1)}{int(m.group(2)) + shift}"
    return out


def rekey(tree: Mapping[str, object], prefix: str) -> dict[str, object]:
    """``tree`` with ``prefix`` removed from each key (``{"dW1": g}`` -> ``{"W1": g}``)."""
    return {k[len(prefix) :] if prefix and k.startswith(prefix) else k: v for k, v in tree.items()}
