"""Pure string matching between parameter names and the names their gradients go by.

Course code keeps gradients in a dict keyed ``dW1``, ``db1``, ... for the parameters ``W1``,
``b1``, ...; other code writes ``grad_W1`` or ``W1_grad``. This module says, from the keys alone,
whether one such convention maps every parameter key to exactly one gradient key. It is layer 0:
it imports nothing of optcheck and knows nothing about arrays, so the gradient checker and the
naming module of the rules (``optcheck.rules.naming``) can both build on it.

The matching is deliberately conservative:

* one convention for all keys (``W1 -> dW1`` and ``b1 -> grad_b1`` in the same dict is no match);
* case-sensitive (``dw1`` is not the gradient of ``W1``);
* one-to-one: every parameter key gets a different gradient key and every gradient key is used;
* unambiguous: when two conventions both fit, nothing is matched.

Examples:
    >>> match_grad_keys(["W1", "b1"], ["db1", "dW1"])
    {'W1': 'dW1', 'b1': 'db1'}
    >>> match_grad_keys(["W1", "b1"], ["W1", "b1"])
    {'W1': 'W1', 'b1': 'b1'}
    >>> match_grad_keys(["W1", "b1"], ["dW1", "grad_b1"]) is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "GRAD_KEY_CONVENTIONS",
    "KEY_FORMS",
    "GradKeyConvention",
    "describe_convention",
    "grad_key_candidates",
    "key_prefix",
    "layer_base",
    "match_grad_keys",
    "match_grad_keys_with_convention",
    "rekey",
    "renumber",
    "split_state_key",
]

# (where, affix): the gradient of parameter ``p`` is called ``affix + p`` ("prefix") or
# ``p + affix`` ("suffix"); ("same", "") is the identity
GradKeyConvention = tuple[str, str]

GRAD_KEY_CONVENTIONS: tuple[GradKeyConvention, ...] = (
    ("same", ""),  # grads["W1"]
    ("prefix", "d"),  # grads["dW1"]: Andrew Ng's courses, many tutorials
    ("prefix", "d_"),  # grads["d_W1"]
    ("prefix", "grad_"),  # grads["grad_W1"]
    ("suffix", "_grad"),  # grads["W1_grad"]
)
"""The naming conventions :func:`match_grad_keys` tries, identity first."""


def _apply(convention: GradKeyConvention, key: str) -> str:
    where, affix = convention
    if where == "prefix":
        return affix + key
    if where == "suffix":
        return key + affix
    return key


def grad_key_candidates(param_key: str) -> tuple[str, ...]:
    """The names the gradient of ``param_key`` may have, one per convention, identity first.

    >>> grad_key_candidates("W1")
    ('W1', 'dW1', 'd_W1', 'grad_W1', 'W1_grad')
    """
    return tuple(_apply(c, param_key) for c in GRAD_KEY_CONVENTIONS)


def describe_convention(convention: GradKeyConvention) -> str:
    """The convention in words, for reports: ``"prefix 'd' (dW1 for W1)"``.

    >>> describe_convention(("prefix", "d"))
    "prefix 'd' (dW1 for W1)"
    >>> describe_convention(("same", ""))
    'the same keys'
    """
    where, affix = convention
    if where == "same":
        return "the same keys"
    return f"{where} {affix!r} ({_apply(convention, 'W1')} for W1)"


def match_grad_keys_with_convention(
    param_keys: Iterable[str], grad_keys: Iterable[str], *, allow_extra: bool = False
) -> tuple[dict[str, str], GradKeyConvention] | None:
    """Like :func:`match_grad_keys`, also returning the convention that matched.

    ``None`` when no convention, or more than one, maps the parameter keys one-to-one onto the
    gradient keys (non-string keys never match). With ``allow_extra``, a prefix or suffix
    convention may leave gradient keys unused (course code returns ``dZ1``, ``dA1`` beside
    ``dW1``, ``db1``); the identity never does.
    """
    params = list(param_keys)
    grads = list(grad_keys)
    if not params or len(params) > len(grads) or (len(params) != len(grads) and not allow_extra):
        return None
    if not all(isinstance(k, str) for k in (*params, *grads)):
        return None
    if len(set(params)) != len(params) or len(set(grads)) != len(grads):
        return None
    targets = set(grads)
    found: list[tuple[dict[str, str], GradKeyConvention]] = []
    for convention in GRAD_KEY_CONVENTIONS:
        mapping = {p: _apply(convention, p) for p in params}
        values = set(mapping.values())
        if values == targets:
            if convention[0] == "same":
                return mapping, convention  # identical keys: nothing to guess
            found.append((mapping, convention))
        elif allow_extra and convention[0] != "same" and values < targets:
            found.append((mapping, convention))
    if len(found) != 1:
        return None
    return found[0]


def match_grad_keys(
    param_keys: Iterable[str], grad_keys: Iterable[str], *, allow_extra: bool = False
) -> dict[str, str] | None:
    """Map each parameter key to its gradient's key, when one naming convention explains them all.

    Args:
        param_keys: the parameters' names (``"W1"``, ``"b1"``, ...).
        grad_keys: the gradients' names as the user's backward returns them (``"dW1"``, ...).
        allow_extra: let a prefix or suffix convention leave gradient keys unused (``dZ1``,
            ``dA1`` beside ``dW1``); never the identity.

    Returns:
        ``{param_key: grad_key}`` when exactly one convention of :data:`GRAD_KEY_CONVENTIONS`
        (the same keys; prefix ``d``, ``d_`` or ``grad_``; suffix ``_grad``) maps every parameter
        key to a distinct gradient key and uses every gradient key; ``None`` otherwise (a key
        missing or extra, conventions mixed, two conventions fitting, non-string keys).

    Examples:
        >>> match_grad_keys(["W", "b"], ["W_grad", "b_grad"])
        {'W': 'W_grad', 'b': 'b_grad'}
        >>> match_grad_keys(["W1", "b1"], ["dW1"]) is None
        True
        >>> match_grad_keys(["W1"], ["dW1", "dZ1", "dA1"], allow_extra=True)
        {'W1': 'dW1'}
    """
    matched = match_grad_keys_with_convention(param_keys, grad_keys, allow_extra=allow_extra)
    return None if matched is None else matched[0]


# ---------------------------------------------------------------------------------------------
# Trees keyed like the gradients, flat state keys, layer numbers (the guard and the audit)
# ---------------------------------------------------------------------------------------------

KEY_FORMS: tuple[tuple[str, str], ...] = (("d", "d"), ("", ""), ("d", ""), ("", "d"))
"""The (gradient prefix, state prefix) pairs course code uses, the most common first."""

_LAYER = re.compile(r"^(.*?)(\d+)$")


def key_prefix(param_keys: Iterable[object], keys: Iterable[object]) -> str | None:
    """The prefix that turns ``param_keys`` into ``keys`` (``""``, ``"d"``, ``"grad_"``...), or ``None``.

    ``key_prefix(["W1", "b1"], ["dW1", "db1"])`` is ``"d"``; identical keys give ``""``. A state
    tree keyed like the gradients (``v["dW1"]``) has the gradients' prefix. ``None`` when no
    prefix convention of :data:`GRAD_KEY_CONVENTIONS` fits (or a suffix one does: ``W1_grad``).

    >>> key_prefix(["W1", "b1"], ["db1", "dW1"])
    'd'
    >>> key_prefix(["W1"], ["V1"]) is None
    True
    """
    pk, tk = list(param_keys), list(keys)
    if not all(isinstance(k, str) for k in (*pk, *tk)):
        return None
    matched = match_grad_keys_with_convention(pk, tk)  # type: ignore[arg-type]
    if matched is None:
        return None
    where, affix = matched[1]
    return affix if where in ("same", "prefix") else None


def rekey(tree: Mapping[str, object], prefix: str) -> dict[str, object]:
    """``tree`` with ``prefix`` removed from each key (``{"dW1": g}`` -> ``{"W1": g}``)."""
    return {k[len(prefix) :] if prefix and k.startswith(prefix) else k: v for k, v in tree.items()}


def split_state_key(key: str, param_keys: Iterable[str]) -> tuple[str, str, str] | None:
    """Split a flat state key into ``(state name, prefix, param key)``, or ``None``.

    One dict holding every state: ``cache_dW1`` -> ``("cache", "d", "W1")``, ``v_W2`` ->
    ``("v", "", "W2")``, ``VdW1`` -> ``("V", "d", "W1")``. The state name is not empty; the
    longest parameter key that fits wins (``W10`` before ``W1``), a gradient form (``dW1``)
    before a bare one; the gradient key itself (``dW1``) is no state key.

    >>> split_state_key("cache_dW1", ["W1", "b1"])
    ('cache', 'd', 'W1')
    """
    for p in sorted(set(param_keys), key=len, reverse=True):
        for prefix in ("d", ""):
            tail = prefix + p
            if not key.endswith(tail):
                continue
            head = key[: -len(tail)]
            name = head[:-1] if head.endswith("_") else head
            if name and not name.endswith("_") and not (name == "d" and not prefix):
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
    """``{key: renumbered key}`` shifting layer numbers so that the first layer is ``base``.

    >>> renumber(["W1", "b1", "W2"], 0)
    {'W1': 'W0', 'b1': 'b0', 'W2': 'W1'}
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
