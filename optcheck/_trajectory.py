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

from ._core import validate as _v
from ._core.errors import UsageError
from ._core.tree import Path, Tree, flatten, unflatten
from .rules import Rule

__all__ = ["Trajectory", "check_trajectories", "check_trajectory", "replay", "step_tree"]


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


def check_trajectory(tr: Any, where: str = "trajectory") -> Trajectory:
    """``tr`` if it is a consistent :class:`Trajectory`; a named error (``UsageError``) otherwise.

    Consistent: ``rule`` is a Rule; ``params0`` a tree of real floating-point numpy arrays (or of
    one array library); ``grads`` and ``params`` lists of trees with the keys and shapes of
    ``params0`` (``params`` no longer than ``grads``); ``state0`` ``None`` or a dict with the
    rule's state keys; ``states`` ``None`` or a list of dicts no longer than ``params``.
    """
    if not isinstance(tr, Trajectory):
        raise _v.UsageTypeError(
            f"{where} is a {type(tr).__name__}; expected an optcheck Trajectory (what the audit records)"
        )
    if not isinstance(tr.rule, Rule):
        hint = f" (optcheck.rules.get({tr.rule!r}))" if isinstance(tr.rule, str) else ""
        raise _v.UsageTypeError(
            f"{where}.rule is invalid; expected an optcheck Rule{hint}, got {_v.describe_value(tr.rule)}"
        )
    leaves = {
        _v.path_str(f"{where}.params0", p): x
        for p, x in _v.check_tree(f"{where}.params0", tr.params0, real_float=True)
    }
    for field in ("grads", "params"):
        seq = getattr(tr, field)
        if isinstance(seq, Mapping) or not isinstance(seq, (list, tuple)):
            raise _v.UsageTypeError(
                f"{where}.{field} is invalid; expected a list with one tree per step, got {_v.describe_value(seq)}"
            )
        for i, tree in enumerate(seq):
            name = f"{where}.{field}[{i}]"
            for p, x in _v.check_tree(name, tree, numbers_ok=field == "params"):
                leaves[_v.path_str(name, p)] = x
            _v.check_same_structure({f"{where}.params0": tr.params0, name: tree}, namespace=False)
    if len(tr.params) > len(tr.grads):
        raise UsageError(
            f"{where} has {len(tr.params)} steps of params but {len(tr.grads)} of grads; expected one "
            "gradient per step the target took"
        )
    _v.check_same_namespace(leaves)
    if tr.state0 is not None:
        state0 = _v.check_mapping(f"{where}.state0", tr.state0, optional=False)
        expected = set(tr.rule.scalar_states) | set(tr.rule.array_keys())
        if set(state0) != expected:
            raise UsageError(
                f"{where}.state0 has the keys {sorted(state0)}; expected a {tr.rule.name} state with the keys "
                f"{sorted(expected)} (rule.init(params0) builds one), or None"
            )
    if tr.states is not None and (isinstance(tr.states, Mapping) or not isinstance(tr.states, (list, tuple))):
        raise _v.UsageTypeError(
            f"{where}.states is invalid; expected None or a list of state dicts, got {_v.describe_value(tr.states)}"
        )
    return tr


def check_trajectories(trajectories: Any, name: str = "trajectories") -> list[Trajectory]:
    """``trajectories`` as a list of consistent :class:`Trajectory` records (at least one)."""
    if isinstance(trajectories, Trajectory):
        raise _v.UsageTypeError(f"{name} is a single Trajectory; expected a list of them: pass [{name}]")
    if isinstance(trajectories, (str, bytes, Mapping)) or not isinstance(trajectories, Sequence):
        raise _v.UsageTypeError(
            f"{name} is invalid; expected a list of Trajectory records, got {_v.describe_value(trajectories)}"
        )
    trajs = list(trajectories)
    if not trajs:
        raise UsageError(f"{name} is empty; expected at least one Trajectory from the audit")
    return [check_trajectory(tr, f"{name}[{n}]") for n, tr in enumerate(trajs)]


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
            raise UsageError(
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
    """Step ``rule`` over ``grads`` from ``params0``; returns ``(params, state)`` after each step.

    The pure ``rule.step`` is the fastest safe form here: every step's result is kept, so
    ``rule.step_`` would need a fresh copy of the parameters and state each step, which is
    the allocation the pure form makes anyway, plus a copy and a write-back (about twice
    the time on the small arrays the audit replays).
    """
    state: Mapping[str, Any] = rule.init(params0) if state0 is None else state0
    params = params0
    out = []
    for g in grads:
        params, state = step_tree(rule, params, g, state, overrides)
        out.append((params, dict(state)))
    return out
