"""Trajectories: what a target did over several steps, and the reference replayed on the same inputs.

The audit records a :class:`Trajectory` for each generated case (initial
parameters and state, the gradient given at each step, and what the target
returned); the differential test, convention matching and diagnosis all replay
reference rules (or mutants of them) over the same inputs with :func:`replay`.

Per-leaf overrides express what torch calls parameter groups: for example the
course convention of L2 regularisation on the weights only is the rule with
``weight_decay=λ`` and an override ``{("b1",): rule.replace(weight_decay=0.0)}``.
Every rule steps each array independently, so stepping leaves one by one equals
stepping the whole tree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ._tree import Path, Tree, flatten, unflatten
from .rules import Rule

__all__ = ["Trajectory", "replay", "step_tree"]


@dataclasses.dataclass
class Trajectory:
    """One generated case and what the target did with it.

    * ``rule``: the reference rule with the hyperparameters the user asked for;
    * ``params0``: the parameters before the first step (a tree of numpy arrays,
      keyed by the parameter names, e.g. ``{"W1": ..., "b1": ...}``);
    * ``state0``: the reference state before the first step (``None``: ``rule.init(params0)``);
    * ``grads``: the gradient given at each step (trees with the structure of ``params0``);
    * ``params``: the parameters the target returned after each step;
    * ``states``: the target's state after each step, mapped to the rule's state names
      (``{"exp_avg_sq": tree, ...}``) where the adapter could map them, else ``None``;
    * ``overrides``: per-leaf rules replacing ``rule`` for some key paths (parameter groups,
      such as no weight decay on biases);
    * ``names``: the user's own names for the roles (``{"params": "parameters", "exp_avg_sq": "S"}``),
      for messages;
    * ``error``: when the target raised, crashed or timed out at some step, a short description;
      ``params``/``states`` then hold the steps completed before it.
    """

    rule: Rule
    params0: Tree
    grads: list[Tree]
    params: list[Tree]
    state0: dict[str, Any] | None = None
    states: list[dict[str, Tree]] | None = None
    overrides: Mapping[Path, Rule] = dataclasses.field(default_factory=dict)
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def steps(self) -> int:
        """How many steps the target completed."""
        return len(self.params)


def step_tree(
    rule: Rule,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any],
    overrides: Mapping[Path, Rule] | None = None,
) -> tuple[Tree, dict[str, Any]]:
    """``rule.step`` with per-leaf ``overrides`` (parameter groups); without overrides, exactly ``rule.step``."""
    if not overrides:
        return rule.step(params, grads, state)
    keys = rule.array_keys()
    p_leaves = flatten(params)
    g_leaves = dict(flatten(grads))
    s_leaves = {k: dict(flatten(state[k])) for k in keys}
    scalars = {k: v for k, v in state.items() if k not in keys}
    new_p: list[Any] = []
    new_s: dict[str, list[Any]] = {k: [] for k in keys}
    new_scalars: dict[str, Any] = {}
    for path, p in p_leaves:
        leaf_rule = overrides.get(path, rule)
        if type(leaf_rule) is not type(rule) or leaf_rule.array_keys() != keys:
            raise ValueError(
                f"override for {path} is a {type(leaf_rule).__name__} with state {leaf_rule.array_keys()}; "
                f"it must be the same rule as {type(rule).__name__} (state {keys}) with other hyperparameters"
            )
        leaf_state = {**scalars, **{k: s_leaves[k][path] for k in keys}}
        p2, s2 = leaf_rule.step(p, g_leaves[path], leaf_state)
        new_p.append(p2)
        for k in keys:
            new_s[k].append(s2[k])
        new_scalars = {k: v for k, v in s2.items() if k not in keys}
    out_state: dict[str, Any] = dict(new_scalars)
    for k in keys:
        out_state[k] = unflatten(params, new_s[k])
    return unflatten(params, new_p), out_state


def replay(
    rule: Rule,
    params0: Tree,
    grads: Sequence[Tree],
    state0: Mapping[str, Any] | None = None,
    overrides: Mapping[Path, Rule] | None = None,
) -> list[tuple[Tree, dict[str, Any]]]:
    """Step ``rule`` over ``grads`` from ``params0``; returns ``(params, state)`` after each step."""
    state: Mapping[str, Any] = rule.init(params0) if state0 is None else state0
    params = params0
    out = []
    for g in grads:
        params, state = step_tree(rule, params, g, state, overrides)
        out.append((params, dict(state)))
    return out
