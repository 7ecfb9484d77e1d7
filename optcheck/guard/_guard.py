"""A runtime guard for training loops: :class:`Guard`, :func:`guarded` and :func:`trap`.

* :class:`Guard` runs the invariants of :mod:`optcheck.invariants` on each step of a
  loop and raises, warns, logs or calls you back at the first broken one;
* :func:`guarded` wraps your own update function (the course style
  ``update_parameters(parameters, grads, V, S, ...)``, mutating in place or
  returning) so that every call is checked before and after, with one line;
* :func:`trap` turns numpy's floating-point warnings into an :class:`InvariantError`
  naming your source line.

The guard never mutates the user's arrays and keeps no reference to them; it copies
the inputs only in :meth:`Guard.snapshot` (all of them, or only the sampled
coordinates with ``sample=K``), which :func:`guarded` takes before each checked call.
The environment variable ``OPTCHECK_GUARD=off|warn|log|raise`` overrides the mode of
every guard without code changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import math
import os
import sys
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as _device

from .. import rules as _rules
from .._core import validate as _v
from .._core.arrays import copy as _copy
from .._core.arrays import is_array as _is_arraylike
from .._core.arrays import is_torch as _is_torch
from .._core.arrays import namespace as _namespace
from .._core.arrays import shape as _shape
from .._core.arrays import to_numpy
from .._core.errors import UsageError
from .._tree import Path, Tree, flatten, unflatten
from ..invariants import (
    INVARIANTS,
    Context,
    InvariantError,
    InvariantWarning,
    Leaf,
    Violation,
    check_structure,
    fmt_index,
    fmt_number,
    prepare,
    roles_for,
    run_checks,
    screen,
    sort_violations,
)
from ..invariants import is_scalar_entry as _is_scalar_state
from ..rules import MONOTONE_ROLES, Rule, naming

__all__ = ["MODES", "Guard", "Snapshot", "guarded", "trap"]

#: A sample drawn for one step: flat indices, full shapes and dtypes by key path.
_Drawn = tuple[dict[Path, Any], dict[Path, tuple[int, ...]], dict[Path, Any]]
_BEFORE_KEYS = frozenset({"params", "grads", "state"})
#: The invariants that compare a step with the values before it.
_HISTORY_IDS = frozenset({"update-without-gradient", "update-too-large", "accumulator-decreased"})

MODES = ("raise", "warn", "log", "off")
"""The modes of a guard by name (a guard also accepts a callable taking the list of violations)."""
ENV_VAR = "OPTCHECK_GUARD"

logger = logging.getLogger("optcheck")

# ---------------------------------------------------------------------------
# Array helpers
# ---------------------------------------------------------------------------


def _copy_tree(tree: Tree) -> Tree:
    leaves = flatten(tree)
    return unflatten(tree, [_copy(x) for _, x in leaves])


class _Bail(Exception):
    """The fast path leaves this step to the precise one (trees that do not line up, a non-array leaf)."""


# errors from the shared checks name the arguments of Guard.check (not those of check_update)
_GUARD_LABELS = {
    "new_params": "params",
    "new_state": "state",
    "state": "before['state']",
    "params": "before['params']",
}
_GUARD_LABELS_AFTER_ONLY = {**_GUARD_LABELS, "before['params']": "params", "params": "params"}


def _array_leaf(x: Any) -> Any:
    """``x`` when it is an array of a known namespace (as the precise path would take it), else :class:`_Bail`."""
    if type(x) is np.ndarray:
        if x.dtype.kind != "f":
            raise _Bail  # integers, complex, objects, strings: the precise path converts or names them
        return x
    if not _is_arraylike(x) or isinstance(x, np.ndarray):
        raise _Bail  # np.matrix and masked arrays too: the precise path refuses them by name
    _namespace(x)  # TypeError for an array-like of no known namespace (the precise path converts it)
    return x


class _Sampler:
    """Flat sample indices per key path, the previously bad ones always included."""

    def __init__(self, k: int, seed: int) -> None:
        self.k = k
        self.rng = np.random.default_rng(seed)
        self.bad: dict[Path, list[int]] = {}

    def draw(self, path: Path, n: int) -> np.ndarray | None:
        if n <= self.k:
            return None
        idx = self.rng.integers(0, n, self.k)
        bad = [i for i in self.bad.get(path, ()) if i < n]
        if bad:
            idx = np.concatenate([np.asarray(bad, dtype=idx.dtype), idx])
        idx.sort()  # memory order: a faster gather; a repeated index is harmless
        return idx

    def remember(self, path: Path, flat: int) -> None:
        lst = self.bad.setdefault(path, [])
        if flat not in lst:
            lst.append(flat)
            del lst[:-32]


def _gather(x: Any, idx: np.ndarray, cache: dict[Any, Any]) -> Any:
    if type(x) is np.ndarray:
        return x.reshape(-1).take(idx)
    xp = array_namespace(x)
    dev = _device(x)
    key = (id(xp), str(dev))
    ix = cache.get(key)
    if ix is None:
        ix = xp.asarray(idx, device=dev) if dev is not None else xp.asarray(idx)
        cache[key] = ix
    return xp.take(xp.reshape(x, (-1,)), ix)


# ---------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Snapshot:
    """What :meth:`Guard.snapshot` copied before a step.

    ``params``, ``grads`` and ``state`` (rule keys -> trees) are copies of the whole
    arrays, or, when the guard samples, trees of 1-d arrays holding the sampled
    coordinates (``samples`` maps each key path to its flat indices, ``shapes`` and
    ``dtypes`` to the full shapes and dtypes). ``step`` is the step counter before the step.
    """

    params: Tree
    grads: Tree | None
    state: dict[str, Any]
    samples: dict[Path, np.ndarray | None] | None = None
    shapes: dict[Path, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    dtypes: dict[Path, Any] = dataclasses.field(default_factory=dict)
    step: int | None = None


# ---------------------------------------------------------------------------
# Mode
# ---------------------------------------------------------------------------


def _env_mode() -> str | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value not in MODES:
        raise ValueError(f"{ENV_VAR}={raw!r} is invalid; expected one of {list(MODES)}")
    return value


def _check_mode(mode: Any) -> str | Callable[[list[Violation]], Any]:
    if callable(mode):
        return mode  # type: ignore[no-any-return]
    if isinstance(mode, str) and mode.lower() in MODES:
        return mode.lower()
    raise ValueError(
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


# ---------------------------------------------------------------------------
# State names
# ---------------------------------------------------------------------------


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
    raise TypeError(
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


# ---------------------------------------------------------------------------
# Guard
# ---------------------------------------------------------------------------


class Guard:
    """Check the invariants of an update rule on every step of a training loop.

    ``Guard(rule=None, mode="raise", every=1, sample=None, **hyper)``:

    * ``rule``: a rule name (``"rmsprop"``) or :class:`~optcheck.rules.Rule`, with its
      hyperparameters as keywords (``lr=0.01, alpha=0.9``). With a rule the guard knows
      which state entries are second moments, accumulators and momenta, and the bound
      on a step; without one it checks only finiteness, shapes, dtypes and mutation.
    * ``mode``: ``"raise"`` (:class:`~optcheck.InvariantError`), ``"warn"``
      (:class:`~optcheck.invariants.InvariantWarning`), ``"log"`` (the ``optcheck`` logger),
      ``"off"``, or a callable receiving the list of violations. ``OPTCHECK_GUARD`` overrides it.
    * ``every=N``: check every N-th step only; ``sample=K``: check K random coordinates of
      each array (always including those that were bad before) instead of all of them.
    * ``roles``: the user's state names mapped to the rule's state names or roles
      (``{"S": "square_avg"}`` or ``{"S": "second-moment"}``); common names (``S``, ``s``,
      ``cache``, ``V``, ``v``, ``m``, ...) and the rule's own names are recognised without it.
    * ``names``: the user's names for ``params`` and ``grads`` in messages.
    * ``overrides``: per-parameter hyperparameters (torch's parameter groups), e.g. the
      course's L2 on weights only: ``{"b1": {"weight_decay": 0.0}, "b2": {...}}``.
    * ``shadow=True``: also recompute the reference rule on ``shadow_sample`` random
      coordinates and report ``differs-from-reference``.
    * ``skip``: invariant ids not to check.

    :meth:`check` is called after the step with the new values and ``before=`` the old
    ones; :meth:`snapshot` copies what an in-place update would overwrite.
    """

    def __init__(
        self,
        rule: str | Rule | None = None,
        mode: str | Callable[[list[Violation]], Any] = "raise",
        every: int = 1,
        sample: int | None = None,
        *,
        roles: Mapping[str, str] | None = None,
        names: Mapping[str, str] | None = None,
        overrides: Mapping[Any, Mapping[str, Any]] | None = None,
        shadow: bool = False,
        shadow_sample: int = 256,
        skip: tuple[str, ...] | list[str] = (),
        seed: int = 0,
        **hyper: Any,
    ) -> None:
        self.rule: Rule | None = _resolve_rule(rule, hyper)
        self._mode = _check_mode(mode)
        env = _env_mode()
        self.mode: str | Callable[[list[Violation]], Any] = env if env is not None else self._mode
        for label, value, low in (("every", every, 1), ("shadow_sample", shadow_sample, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label}={value!r} is invalid; expected a whole number >= {low}")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise ValueError(
                f"sample={sample!r} is invalid; expected None (check every entry) or a whole number >= 1"
            )
        if not isinstance(shadow, bool):
            raise ValueError(f"shadow={shadow!r} is invalid; expected True or False")
        if shadow and self.rule is None:
            raise ValueError(
                f"shadow=True needs a rule to recompute; pass rule=<name> (one of {_rules.names()})"
            )
        skip = _v.check_str_seq("skip", skip)
        bad_skip = sorted(set(skip) - set(INVARIANTS))
        if bad_skip:
            raise UsageError(
                f"skip names unknown invariant(s) {bad_skip}; expected ids from {list(INVARIANTS)}"
            )
        seed = _v.check_seed("seed", seed)
        roles = _v.check_names("roles", roles)
        names = _v.check_names("names", names)
        overrides = _v.check_mapping(
            "overrides", overrides, key_type=(str, tuple), what="a dict of per-parameter hyperparameters"
        )
        self.every = every
        self.sample = sample
        self.shadow = shadow
        self.shadow_sample = shadow_sample
        self.skip = frozenset(skip)
        self.roles: dict[str, str] = dict(roles or {})
        for user_name, role_value in self.roles.items():
            naming.role_or_key(self.rule, user_name, role_value)  # validate now, with the list of valid names
        self.names: dict[str, str] = dict(names or {})
        bad_names = sorted(set(self.names) - {"params", "grads"})
        if bad_names:
            raise ValueError(f"names has unexpected key(s) {bad_names}; expected 'params' and/or 'grads'")
        self.overrides = self._build_overrides(overrides or {})
        self._base_rule = self.rule  # the rule as configured; a guarded call may pass other hyperparameters
        self._call_key: Any = None
        self._signatures: dict[Any, inspect.Signature | None] = {}
        self.seed = seed
        self._sampler = _Sampler(sample, seed) if sample is not None else None
        self._shadow_rng = np.random.default_rng(seed + 1)
        self.steps = 0  # calls to check() (or to the guarded function)
        self.checked = 0  # steps actually checked
        self.violations: list[Violation] = []  # those of the last checked step
        self._tracker: dict[str, Any] | None = None
        self._tracker_before: dict[str, Any] = {}
        self._name_cache: dict[tuple[str, ...], naming.StateMap] = {}
        #: Notes about the user's names (a state the rule has no place for, left alone by the target).
        self.notes: list[str] = []
        self._unplaced_seen: set[str] = set()
        self._plans: dict[Any, _Plan | None] = {}  # tree structure -> where the arrays sit (see _fast)

    # -- configuration -------------------------------------------------------------

    def _build_overrides(self, overrides: Mapping[Any, Mapping[str, Any]]) -> dict[Path, Rule]:
        self._override_changes: dict[Path, dict[str, Any]] = {}
        if overrides and self.rule is None:
            raise UsageError("overrides need a rule; pass rule=<name>")
        for key, changes in overrides.items():
            path: Path = (key,) if isinstance(key, str) else tuple(key)
            if not isinstance(changes, Mapping):
                raise _v.UsageTypeError(
                    f"overrides[{key!r}] must be a dict of hyperparameters, got {type(changes).__name__}"
                )
            if isinstance(key, tuple) and not all(isinstance(k, str) for k in key):
                raise _v.UsageTypeError(
                    f"overrides has the key {key!r}; expected a parameter name or a tuple of names (a key path)"
                )
            assert self.rule is not None
            normal = naming.normalise_hyper(self.rule, changes, what=f"overrides[{key!r}]: ")
            valid = [s.name for s in type(self.rule).hyper_specs()]
            unknown = [k for k in normal if k not in valid]
            if unknown:
                raise UsageError(
                    f"overrides[{key!r}] has unknown hyperparameter(s) {unknown}; {self.rule.name} takes {valid}"
                )
            try:
                self.rule.replace(**normal)
            except (ValueError, TypeError) as e:
                raise UsageError(f"overrides[{key!r}]: {e}") from None
            self._override_changes[path] = normal
        return self._overrides_on(self.rule)

    def _overrides_on(self, rule: Rule | None) -> dict[Path, Rule]:
        """The per-parameter rules: ``rule`` with each path's changes (torch's parameter groups)."""
        if rule is None:
            return {}
        return {path: rule.replace(**changes) for path, changes in self._override_changes.items()}

    def __repr__(self) -> str:
        rule = self.rule.name if self.rule is not None else None
        return f"Guard(rule={rule!r}, mode={self.mode!r}, every={self.every}, sample={self.sample}, shadow={self.shadow})"

    @property
    def due(self) -> bool:
        """Whether the next step will be checked (``every``, and the mode is not ``"off"``)."""
        return self.mode != "off" and self.steps % self.every == 0

    # -- state handling ------------------------------------------------------------

    def _split_state(
        self, params: Tree, state: Mapping[str, Any] | None, arg: str = "state"
    ) -> tuple[dict[str, Any], dict[str, str], dict[str, str], dict[str, str]]:
        """User state -> (trees by internal key, roles, names by internal key, key prefixes).

        ``arg`` is how errors name the argument (``"before['state']"``).
        """
        parts, role_of = self._state_parts(params, state, arg)
        trees: dict[str, Any] = {}
        names: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        for user_name, key, prefix, tree in parts:
            trees[key] = _rekey(tree, prefix)
            if user_name != key:
                names[key] = user_name
            if prefix:
                prefixes[key] = prefix
        return trees, role_of, names, prefixes

    def _state_parts(
        self, params: Tree, state: Mapping[str, Any] | None, arg: str = "state"
    ) -> tuple[list[tuple[str, str, str, Tree]], dict[str, str]]:
        """(user name, internal key, key prefix, user's tree) per state entry, in order; roles by internal key.

        A bare array (or a single tree keyed like ``params``) is one entry named ``"state"``;
        its walk is the walk of the user's ``state`` argument.
        """
        if state is None:
            return [], {}
        if not isinstance(state, Mapping):
            if _is_arraylike(state) and _is_arraylike(params):
                state = {"state": state}
            else:
                raise _v.UsageTypeError(
                    f"{arg} must be a dict naming each state tree (for example state={{'S': S}}), got "
                    f"{type(state).__name__}"
                )
        if (
            isinstance(params, Mapping)
            and state
            and all(
                not isinstance(k, str) or k in params or (k[:1] == "d" and k[1:] in params) for k in state
            )
            and not (
                self.rule is not None and set(state) & {*self.rule.array_keys(), *self.rule.scalar_states}
            )
        ):
            state = {"state": state}  # a single tree keyed like params
        smap = self._state_map(tuple(state))
        key_of = smap.keys
        return [(u, key_of.get(u, u), _detect_prefix(params, tree), tree) for u, tree in state.items()], dict(
            smap.roles
        )

    def map_states(self, names: Iterable[str]) -> naming.StateMap:
        """How this guard reads the user's state names: :func:`optcheck.rules.naming.map_states` with ``roles``."""
        return self._state_map(tuple(names))

    def _state_map(self, names: tuple[str, ...]) -> naming.StateMap:
        """How the user's state names map to the rule's keys (:func:`optcheck.rules.naming.map_states`), cached.

        A name it cannot place keeps its own name and no role (only the rule-free checks apply
        to it); :meth:`_check_unplaced` then requires that the target leaves it alone.
        """
        cached = self._name_cache.get(names)
        if cached is None:
            cached = naming.map_states(self.rule, names, self.roles)
            self._name_cache[names] = cached
        return cached

    def _check_unplaced(
        self, state: Mapping[str, Any] | None, before: Snapshot | Mapping[str, Any] | None
    ) -> None:
        """Raise for a state the rule has no place for when the step changed it; note it once otherwise.

        The classic course RMSprop takes ``V`` and never touches it: that is ignored with a
        note. A state that changes and that the guard cannot name is a :class:`UsageError`
        naming it and the rule's states (pass ``roles=``).
        """
        if self.rule is None or not isinstance(state, Mapping) or before is None:
            return
        smap = self._name_cache.get(tuple(state))
        if smap is None or not smap.unplaced:
            return
        old = before.state if isinstance(before, Snapshot) else before.get("state")
        if not isinstance(old, Mapping):
            return
        for name in smap.unplaced:
            if name in self._unplaced_seen or name not in state or name not in old:
                continue
            now, was = state[name], old[name]
            if not _is_number(now):
                now = _rekey(now, _detect_prefix(was, now))
                if isinstance(before, Snapshot) and before.samples is not None:
                    now = _sample_tree(now, before.samples)
            if _changed(was, now):
                raise smap.error(name)
            self._unplaced_seen.add(name)
            self.notes.append(smap.note(name))
            logger.info("optcheck guard: %s", smap.note(name))

    # -- snapshot and check ---------------------------------------------------------

    def snapshot(
        self, *, params: Tree, grads: Tree | None = None, state: Mapping[str, Any] | None = None
    ) -> Snapshot:
        """Copy what :meth:`check` needs from before a step that may overwrite its inputs.

        Whole copies, or with ``sample=K`` only the sampled coordinates (the same ones
        :meth:`check` then reads after the step). Pass the result as ``check(before=...)``.
        """
        self._validate_inputs(params, grads, state)
        return self._snapshot(params=params, grads=grads, state=state)

    def _validate_inputs(self, params: Tree, grads: Tree | None, state: Mapping[str, Any] | None) -> None:
        """Named errors for leaves no check could read (np.matrix, object dtype, ...) and mixed libraries.

        The structure of ``grads`` and the step entry are checked by :meth:`_snapshot`, which
        maps the user's names anyway.
        """
        if (
            _v.is_plain_tree(params)
            and (grads is None or _v.is_plain_tree(grads))
            and (state is None or _v.is_plain_tree(state))
        ):
            return  # dicts of float ndarrays and numbers: nothing to refuse (the usual case, kept cheap)
        found = [("params", _v.check_tree("params", params, numbers_ok=True))]
        if grads is not None:
            found.append(("grads", _v.check_tree("grads", grads, numbers_ok=True)))
        if isinstance(state, Mapping):
            for k, v in state.items():
                if not isinstance(k, str):
                    raise _v.UsageTypeError(
                        f"state has the key {k!r}, a {type(k).__name__}; expected string keys"
                    )
                where = f"state[{k!r}]"
                found.append((where, _v.check_tree(where, v, numbers_ok=True, optional=True)))
        if len({type(x) for _, leaves in found for _, x in leaves}) > 1:
            _v.check_same_namespace({_v.path_str(n, p): x for n, leaves in found for p, x in leaves})

    def _snapshot(
        self,
        *,
        params: Tree,
        grads: Tree | None = None,
        state: Mapping[str, Any] | None = None,
        drawn: _Drawn | None = None,
    ) -> Snapshot:
        trees, _, snames, _ = self._split_state(params, state)
        gp = _detect_prefix(params, grads) if grads is not None else ""
        grads_k = _rekey(grads, gp) if grads is not None else None
        if grads_k is not None and not _v.same_layout(params, grads_k):
            _v.check_same_structure({"params": params, "grads": grads_k}, namespace=False)
        step = _scalar_step(trees.get("step"))
        if "step" in trees and not isinstance(trees["step"], Mapping):
            value = trees["step"]
            if step is None or step < 0 or isinstance(value, (bool, np.bool_)):
                raise UsageError(
                    f"state[{snames.get('step', 'step')!r}]={value!r} is invalid; expected a whole number >= 0"
                )
        arrays = {k: v for k, v in trees.items() if not _is_number(v)}
        if self._sampler is None:
            return Snapshot(
                params=_copy_tree(params),
                grads=None if grads_k is None else _copy_tree(grads_k),
                state={
                    **{k: v for k, v in trees.items() if _is_number(v)},
                    **{k: _copy_tree(v) for k, v in arrays.items()},
                },
                step=step,
            )
        samples, shapes, dtypes = drawn if drawn is not None else self._draw(params)
        snap = Snapshot(
            params=_sample_tree(params, samples),
            grads=None if grads_k is None else _sample_tree(grads_k, samples),
            state={k: (v if _is_number(v) else _sample_tree(v, samples)) for k, v in trees.items()},
            samples=samples,
            shapes=shapes,
            dtypes=dtypes,
            step=step,
        )
        return snap

    def check(
        self,
        *,
        params: Tree,
        grads: Tree,
        state: Mapping[str, Any] | None = None,
        step: int | None = None,
        before: Snapshot | Mapping[str, Any] | None = None,
    ) -> list[Violation]:
        """Check one step; call it after the update.

        * ``params``, ``state``: the values after the step; ``state`` maps names to trees
          (``{"S": S}``, or a rule-shaped state ``{"step": 3, "exp_avg": ..., ...}``);
        * ``grads``: the gradient the step used;
        * ``before``: the values before the step: a :class:`Snapshot` from :meth:`snapshot`,
          or in a loop that does not overwrite its inputs simply
          ``{"params": old_params, "state": old_state}`` (no copy needed). Without it only
          the checks that need no history run (finiteness, negative second moments);
        * ``step``: the step number for messages (default: the state's ``step`` entry, else
          the number of calls so far).

        Returns the violations (empty when all holds), after handing them to the mode.
        """
        if params is None or grads is None:
            which = "params" if params is None else "grads"
            raise _v.UsageTypeError(f"{which}=None is invalid; expected an array or a dict of arrays")
        if step is not None:
            step = _v.check_int("step", step, low=0)
        self.steps += 1
        if self.shadow:
            self._advance_tracker()
        if self.mode == "off" or (self.steps - 1) % self.every:
            return []
        self.checked += 1
        found = self._check(params, grads, state, step, before)
        self.violations = found
        if found:
            self._handle(found)
        return found

    def call(self, update_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the user's update function once, checked: what :func:`guarded` does on each call.

        The function takes the parameters and the gradients first, then its state trees
        (named as :func:`optcheck.rules.naming.map_states` reads them, or by ``roles=``) and
        possibly the step ``t``; it may update its arguments in place or return ``(parameters,
        *states)``. Hyperparameters the call passes (``learning_rate=0.01``, ``beta=0.9``,
        ``epsilon``..., any name of :mod:`optcheck.rules.naming`, defaults of the function
        included) replace the guard's own for this call, since they are what the function
        computes with; a course L2 pair (``lambd``, ``m``) sets ``weight_decay = λ/m`` on the
        weights only. Returns what the function returned.
        """
        if not self.due:
            self.steps += 1
            if self.shadow:
                self._advance_tracker()
            return update_fn(*args, **kwargs)
        sig = self._signature(update_fn)
        arguments = _bind(sig, args, kwargs)
        call = _classify(arguments)
        if self.rule is not None:
            self._use_call_hyper(_bind(sig, args, kwargs, defaults=True), call, arguments[call.params])
        params, grads = arguments[call.params], arguments[call.grads]
        state_in = {n: arguments[n] for n in call.states}
        snap = self.snapshot(params=params, grads=grads, state=state_in)
        user_step = arguments.get(call.step) if call.step else None
        result = update_fn(*args, **kwargs)
        new_params, new_states = _split_result(result, call, arguments)
        self.steps += 1
        if self.shadow:
            self._advance_tracker()
        self.checked += 1
        step = int(user_step) if user_step is not None else self.steps
        if snap.step is None:
            snap.step = step - 1
        found = self._check(
            new_params, grads, new_states, step, snap, param_name=call.params, grads_name=call.grads
        )
        self.violations = found
        if found:
            self._handle(found)
        return result

    def _signature(self, fn: Callable[..., Any]) -> inspect.Signature | None:
        cached = self._signatures.get(fn)
        if cached is None and fn not in self._signatures:
            try:
                cached = inspect.signature(fn)
            except (TypeError, ValueError):
                cached = None
            self._signatures[fn] = cached
        return cached

    def _use_call_hyper(self, arguments: Mapping[str, Any], call: _CallShape, params: Tree) -> None:
        """Check this call against the hyperparameters it passes (see :meth:`call`)."""
        assert self._base_rule is not None
        hyper, note = _call_hyper(self._base_rule, arguments, call)
        key = (tuple(sorted(hyper.items())), tuple(params) if isinstance(params, Mapping) else None)
        if key == self._call_key:
            return
        self._call_key = key
        rule = self._base_rule.replace(**hyper) if hyper else self._base_rule
        overrides = self._overrides_on(rule)
        if note is not None and isinstance(params, Mapping):
            no_decay = rule.replace(weight_decay=0.0)
            for k in params:
                if isinstance(k, str) and not k.startswith("W") and (k,) not in overrides:
                    overrides[(k,)] = no_decay
            if note not in self.notes:
                self.notes.append(note)
        if rule != self.rule or overrides != self.overrides:
            self.rule = rule
            self.overrides = overrides
            self._plans.clear()
            self._tracker = None

    def _check(
        self,
        params: Tree,
        grads: Tree,
        state: Mapping[str, Any] | None,
        step: int | None,
        before: Snapshot | Mapping[str, Any] | None,
        *,
        param_name: str | None = None,
        grads_name: str | None = None,
    ) -> list[Violation]:
        self._check_unplaced(state, before)
        drawn: _Drawn | None = None
        if not self.shadow:
            clear, drawn = self._fast(params, grads, state, step, before)
            if clear:
                return []
        return self._precise(
            params, grads, state, step, before, drawn, param_name=param_name, grads_name=grads_name
        )

    def _precise(
        self,
        params: Tree,
        grads: Tree,
        state: Mapping[str, Any] | None,
        step: int | None,
        before: Snapshot | Mapping[str, Any] | None,
        drawn: _Drawn | None,
        *,
        param_name: str | None = None,
        grads_name: str | None = None,
    ) -> list[Violation]:
        """Every invariant, with the records that describe what broke (``drawn``: the sample to use)."""
        trees, role_of, snames, prefixes = self._split_state(params, state)
        gp = _detect_prefix(params, grads)
        if gp:
            prefixes["grads"] = gp
        grads_k = _rekey(grads, gp)
        names = {
            "params": param_name or self.names.get("params", "params"),
            "grads": grads_name or self.names.get("grads", "grads"),
            **snames,
        }
        # before values
        snap: Snapshot | None = before if isinstance(before, Snapshot) else None
        if snap is None and before is not None:
            if not isinstance(before, Mapping):
                raise ValueError(
                    f"before must be a Snapshot (guard.snapshot(...)) or a dict, got {type(before).__name__}"
                )
            bad = sorted(set(before) - {"params", "grads", "state"})
            if bad:
                raise ValueError(
                    f"before has unexpected key(s) {bad}; expected some of ['grads', 'params', 'state']"
                )
            if self._sampler is not None:
                snap = self._snapshot(
                    params=before.get("params", params),
                    grads=before.get("grads"),
                    state=before.get("state"),
                    drawn=drawn,
                )
            else:
                s0, _, _, _ = self._split_state(params, before.get("state"), "before['state']")
                bg = before.get("grads")
                snap = Snapshot(
                    params=before.get("params", params),
                    grads=None if bg is None else _rekey(bg, _detect_prefix(params, bg)),
                    state=s0,
                    step=_scalar_step(s0.get("step")),
                )
        if step is None:
            step = _scalar_step(trees.get("step"))
            if step is None:
                step = (snap.step + 1) if snap is not None and snap.step is not None else self.steps
        history = snap is not None
        new_state = dict(trees)
        skip = self.skip
        if not history:
            # only the values after the step: no step-over-step invariants
            skip = skip | {"update-without-gradient", "update-too-large", "accumulator-decreased"}
        pre: list[Violation] = []
        samples = snap.samples if snap is not None else None
        if self._sampler is not None and samples is None and snap is None:
            samples, shapes, dtypes = drawn if drawn is not None else self._draw(params)
        elif snap is not None and samples is not None:
            shapes, dtypes = snap.shapes, snap.dtypes
        if samples is not None:
            # sampled: structure checks on the full arrays, then gather the same coordinates
            params_s, new_state, keep = self._gather_after(
                params, new_state, samples, shapes, dtypes, names, prefixes, step, pre
            )
            g_s = _sample_tree(grads_k, samples)
            old_p = snap.params if snap is not None else params_s
            before_map: dict[str, Any] = {"params": old_p, "state": snap.state if snap is not None else {}}
            if snap is not None and snap.grads is not None:
                before_map["grads"] = snap.grads
            ctx, leaves, counters = prepare(
                self.rule,
                old_p,
                g_s,
                before_map["state"],
                params_s,
                new_state,
                before=before_map,
                names=names,
                step=step,
                roles=role_of,
                key_prefix=prefixes,
                skip=skip,
                overrides=self.overrides,
                history=history,
                labels=_GUARD_LABELS if history else _GUARD_LABELS_AFTER_ONLY,
                state_keys=snames,
            )
            for leaf in leaves:
                leaf.shape = shapes[leaf.path]
                leaf.dtype = dtypes[leaf.path]
                leaf.sample = samples.get(leaf.path)
            leaves = [leaf for leaf in leaves if leaf.path in keep]
        else:
            old_p = snap.params if snap is not None else params
            before_map = {"params": old_p, "state": snap.state if snap is not None else {}}
            if snap is not None and snap.grads is not None:
                before_map["grads"] = snap.grads
            ctx, leaves, counters = prepare(
                self.rule,
                old_p,
                grads_k,
                before_map["state"],
                params,
                new_state,
                before=before_map,
                names=names,
                step=step,
                roles=role_of,
                key_prefix=prefixes,
                skip=skip,
                overrides=self.overrides,
                history=history,
                labels=_GUARD_LABELS if history else _GUARD_LABELS_AFTER_ONLY,
                state_keys=snames,
            )
        found = run_checks(ctx, leaves, counters)
        if self.shadow and snap is not None and "differs-from-reference" not in self.skip:
            found.extend(self._shadow_check(ctx, leaves, step))
        found = sort_violations([*pre, *found])
        if self._sampler is not None:
            for v in found:
                ok = v.path is not None and v.index is not None and v.shape and len(v.index) == len(v.shape)
                if ok and all(0 <= i < d for i, d in zip(v.index, v.shape, strict=True)):  # type: ignore[arg-type]
                    self._sampler.remember(v.path, int(np.ravel_multi_index(v.index, v.shape)))  # type: ignore[arg-type]
        return found

    def _fast(
        self,
        params: Tree,
        grads: Tree,
        state: Mapping[str, Any] | None,
        step: int | None,
        before: Snapshot | Mapping[str, Any] | None,
    ) -> tuple[bool, _Drawn | None]:
        """Screen one step without building a record: ``(True, _)`` when every invariant provably holds.

        It reads the arrays that :meth:`_precise` would check (the same trees, "before" values,
        step and sample) and hands them to :func:`optcheck.invariants.screen`, whose one-pass
        tests imply that the precise checks find nothing. Where each array sits in the user's
        trees is worked out once per tree structure (a :class:`_Plan`; a training loop passes
        the same structure every step), so a step costs one walk over each tree. Anything out
        of the ordinary (a non-array leaf, trees that do not line up, an invalid argument, a
        screen that trips) is left to :meth:`_precise`, which validates, checks and describes;
        the sample drawn here is returned with ``False`` so that both see the same coordinates.
        """
        drawn: _Drawn | None = None
        try:
            lp: list[Any] = []
            lg: list[Any] = []
            ls: list[Any] = []
            lb: list[Any] = []
            snap = before if type(before) is Snapshot else None
            if snap is not None:
                sig_b: Any = (
                    "snapshot",
                    _walk(snap.params, lb),
                    None if snap.grads is None else _walk(snap.grads, lb),
                    _walk(snap.state, lb),
                    snap.samples is None,
                )
            elif before is None:
                sig_b = None
            elif type(before) is dict:
                sig_b = ("dict", _walk(before, lb))
            else:
                return False, None
            key = (_walk(params, lp), _walk(grads, lg), None if state is None else _walk(state, ls), sig_b)
            plan = self._plans.get(key, _NO_PLAN)
            if plan is _NO_PLAN:
                plan = _make_plan(self, params, grads, state, before)
                if len({_v.library_of(x) for x in (*lp, *lg, *ls, *lb) if _is_arraylike(x)}) > 1:
                    plan = None  # arrays of several libraries: the precise path names them
                if len(self._plans) >= 64:
                    self._plans.clear()
                self._plans[key] = plan
            if plan is None:
                return False, None
            assert isinstance(plan, _Plan)
            history = before is not None
            p1 = [_array_leaf(x) for x in lp]
            g = [_array_leaf(lg[j]) for j in plan.g_ix]
            s1 = {k: [_array_leaf(ls[j]) for j in ix] for k, ix in plan.s1_ix.items()}
            p0 = s0 = g0 = None
            if history:
                p0 = p1 if plan.p0_ix is None else [_array_leaf(lb[j]) for j in plan.p0_ix]
                s0 = {k: [_array_leaf(lb[j]) for j in ix] for k, ix in plan.s0_ix.items()}
                g0 = None if plan.g0_ix is None else [_array_leaf(lb[j]) for j in plan.g0_ix]
            if plan.step_ix is not None and (_scalar_step(ls[plan.step_ix]) or 0) < 0:
                return False, None  # a step entry that is not a whole number >= 0: named by the precise path
            if plan.step_ix is not None and _scalar_step(ls[plan.step_ix]) is None:
                return False, None
            if step is None:
                step = None if plan.step_ix is None else _scalar_step(ls[plan.step_ix])
                if step is None:
                    if snap is not None:
                        snap_step = snap.step
                    else:
                        snap_step = None if plan.step0_ix is None else _scalar_step(lb[plan.step0_ix])
                    step = (snap_step + 1) if history and snap_step is not None else self.steps
            counters = [(k, lb[i0], ls[i1]) for k, i0, i1 in plan.counters]
            sampled = self._sampler is not None
            samples: Mapping[Path, Any] = {}
            shapes: Mapping[Path, tuple[int, ...]] = {}
            dtypes: Mapping[Path, Any] = {}
            if sampled:
                if snap is not None:
                    assert snap.samples is not None  # a snapshot without samples has no plan here
                    samples, shapes, dtypes = snap.samples, snap.shapes, snap.dtypes
                else:
                    source = lb if plan.draw_from_before else lp
                    drawn = self._draw_pairs([(path, source[j]) for path, j in plan.draw])
                    samples, shapes, dtypes = drawn
            roles = plan.roles
            leaves = []
            for i, path in enumerate(plan.paths):
                x1, gi = p1[i], g[i]
                x0 = None if p0 is None else p0[i]
                s1i = {k: v[i] for k, v in s1.items()}
                s0i = {} if s0 is None else {k: v[i] for k, v in s0.items()}
                mut = {} if g0 is None else {"grads": (g0[i], gi)}
                if not sampled:
                    base = x1 if x0 is None else x0
                    if _shape(gi) != _shape(base):
                        return (
                            False,
                            drawn,
                        )  # a gradient shaped unlike its parameter: named by the precise path
                    leaves.append(Leaf(path, _shape(base), base.dtype, x0, x1, gi, s0i, s1i, mut))
                    continue
                # sampled: the structure on the full arrays, then the same coordinates of each array
                full = shapes.get(path)
                if full is None or _shape(x1) != full or x1.dtype != dtypes[path] or _shape(gi) != full:
                    return False, drawn
                if any(_shape(x) != full for x in s1i.values()):
                    return False, drawn
                idx = samples.get(path)
                lazy: dict[str, Callable[[], Any]] = {}
                if idx is not None:
                    cache: dict[Any, Any] = {}
                    x1, gi = _gather(x1, idx, cache), _gather(gi, idx, cache)
                    s1i = {k: _gather(x, idx, cache) for k, x in s1i.items()}
                    if snap is None:
                        # the "before" arrays are whole: check their layout, gather what the screens read
                        if x0 is not None:
                            if _shape(x0) != full:
                                return False, drawn
                            x0 = _gather(x0, idx, cache)
                        if mut:
                            if _shape(mut["grads"][0]) != full:
                                return False, drawn
                            mut = {"grads": (_gather(mut["grads"][0], idx, cache), gi)}
                        whole, s0i = s0i, {}
                        for k, x in whole.items():
                            if _shape(x) != full or x.dtype != s1i[k].dtype:
                                return False, drawn
                            if roles.get(k) in MONOTONE_ROLES:
                                s0i[k] = _gather(x, idx, cache)
                            else:
                                lazy[k] = functools.partial(_gather, x, idx, cache)
                    elif mut:
                        mut = {"grads": (mut["grads"][0], gi)}
                leaves.append(
                    Leaf(
                        path, full, dtypes[path], x0, x1, gi, s0i, s1i, mut, sample=idx, lazy_s0=lazy or None
                    )
                )
            ctx = Context(
                rule=self.rule,
                roles=roles,
                names={},
                key_prefix={},
                step=step,
                skip=self.skip if history else self.skip | _HISTORY_IDS,
                leaf_rules=self.overrides,
            )
            return screen(ctx, leaves, counters), drawn
        except (_Bail, ValueError, TypeError, IndexError, KeyError):
            return False, drawn

    def _draw(self, params: Tree) -> tuple[dict[Path, Any], dict[Path, tuple[int, ...]], dict[Path, Any]]:
        """Sample indices, full shapes and dtypes for every parameter."""
        return self._draw_pairs(flatten(params))

    def _draw_pairs(self, pairs: list[tuple[Path, Any]]) -> _Drawn:
        assert self._sampler is not None
        samples: dict[Path, np.ndarray | None] = {}
        shapes: dict[Path, tuple[int, ...]] = {}
        dtypes: dict[Path, Any] = {}
        for path, p in pairs:
            shapes[path] = _shape(p)
            dtypes[path] = getattr(p, "dtype", None)
            samples[path] = self._sampler.draw(path, math.prod(shapes[path]))
        return samples, shapes, dtypes

    def _gather_after(
        self,
        params: Tree,
        new_state: dict[str, Any],
        samples: Mapping[Path, np.ndarray | None],
        shapes: Mapping[Path, tuple[int, ...]],
        dtypes: Mapping[Path, Any],
        names: Mapping[str, str],
        prefixes: Mapping[str, str],
        step: int | None,
        out: list[Violation],
    ) -> tuple[Tree, dict[str, Any], set[Path]]:
        ctx = Context(rule=self.rule, roles={}, names=names, key_prefix=prefixes, step=step, skip=self.skip)
        keep: set[Path] = set()
        shapes_ok: dict[Path, bool] = {}
        for path, p in flatten(params):
            full = shapes.get(path)
            if full is None:
                continue
            changed = check_structure(ctx, "params", path, full, dtypes[path], p, out)
            shapes_ok[path] = not changed
            if not changed:
                keep.add(path)
        out[:] = [v for v in out if v.id not in self.skip]
        for key, tree in new_state.items():
            if _is_number(tree):
                continue
            for path, x in flatten(tree):
                full = shapes.get(path)
                if full is not None and _shape(x) != full and shapes_ok.get(path, False):
                    check_structure(ctx, key, path, full, getattr(x, "dtype", None), x, out)
                    keep.discard(path)

        def gather_tree(tree: Tree) -> Tree:
            leaves = []
            for path, x in flatten(tree):
                idx = samples.get(path)
                ok = path in keep and _is_arraylike(x) and _shape(x) == shapes.get(path)
                if idx is None or not ok:
                    leaves.append(x)  # not gathered: a shape-changed leaf (reported) or a non-array
                else:
                    leaves.append(_gather(x, idx, {}))
            return unflatten(tree, leaves)

        params_s = gather_tree(params)
        state_s = {k: (v if _is_number(v) else gather_tree(v)) for k, v in new_state.items()}
        return params_s, state_s, keep

    def _handle(self, found: list[Violation]) -> None:
        mode = self.mode
        if mode == "raise":
            raise InvariantError(found)
        if mode == "warn":
            err = InvariantError(found)
            warnings.warn(InvariantWarning(str(err)), stacklevel=_user_stacklevel())
        elif mode == "log":
            logger.warning("%s", InvariantError(found))
        elif callable(mode):
            mode(found)

    # -- shadow --------------------------------------------------------------------

    def _advance_tracker(self) -> None:
        """Keep the rule's schedule scalars (NAdam's mu_product, ASGD's eta) in step with the loop."""
        assert self.rule is not None
        extra = [k for k in self.rule.scalar_states if k != "step"]
        if not extra:
            return
        p = np.zeros(1)
        if self._tracker is None:
            self._tracker = self.rule.init(p)
        self._tracker_before = dict(self._tracker)
        with np.errstate(all="ignore"):
            _, self._tracker = self.rule.step(p, np.zeros(1), self._tracker)

    def _shadow_check(self, ctx: Context, leaves: list[Leaf], step: int | None) -> list[Violation]:
        from .._compare import leaf_error, rtol, to_numpy

        out: list[Violation] = []
        assert self.rule is not None
        t0 = (step - 1) if step is not None else self.steps - 1
        for leaf in leaves:
            rule = ctx.rule_for(leaf.path) or self.rule
            if leaf.p0 is None or leaf.p1 is None or leaf.g is None or leaf.skip_elementwise:
                continue
            keys = rule.array_keys()
            if any(k not in leaf.s0 or _shape(leaf.s0[k]) != _shape(leaf.p0) for k in keys):
                continue  # a state entry the user does not keep, or factored (adafactor)
            n = math.prod(_shape(leaf.p0))
            if leaf.sample is None and n > self.shadow_sample:
                idx = np.unique(self._shadow_rng.integers(0, n, self.shadow_sample))
            else:
                idx = None
            cache: dict[Any, Any] = {}

            def pick(x: Any, idx: np.ndarray | None = idx, cache: dict[Any, Any] = cache) -> np.ndarray:
                a = x if idx is None else _gather(x, idx, cache)
                return to_numpy(a).reshape(-1)

            p0, p1, g = pick(leaf.p0), pick(leaf.p1), pick(leaf.g)
            s0 = {k: pick(leaf.s0[k]) for k in keys}
            s1 = {k: pick(leaf.s1[k]) for k in keys if k in leaf.s1}
            state: dict[str, Any] = {"step": t0, **s0}
            extra = [k for k in rule.scalar_states if k != "step"]
            if extra:
                tracker = self._tracker_before
                for k in extra:
                    if k in leaf.s0:
                        state[k] = leaf.s0[k]
                    elif k in tracker:
                        state[k] = tracker[k]
                    else:
                        break
                else:
                    extra = []
                if extra:
                    continue
            try:
                with np.errstate(all="ignore"):
                    ref_p, ref_s = rule.step(p0, g, state)
            except (ValueError, TypeError, ZeroDivisionError, FloatingPointError):
                continue
            tol = rtol(leaf.dtype)
            with np.errstate(all="ignore"):
                du = p1.astype(np.float64) - p0
                dr = np.asarray(ref_p, dtype=np.float64) - p0
                finite = np.isfinite(dr) & np.isfinite(du)
                scale = float(np.max(np.abs(dr[finite]))) if finite.any() else 0.0
                ulp = np.spacing(np.maximum(np.abs(p0), np.abs(p1)).astype(p1.dtype)).astype(np.float64)
                bad = np.where(
                    finite, np.abs(du - dr) > tol * scale + 2 * ulp, np.isfinite(du) != np.isfinite(dr)
                )
            where_bad = [("params", bad)]
            for k, v in s1.items():
                err, _ = leaf_error(v, ref_s[k], leaf.dtype)
                if err > 1:
                    r = np.asarray(ref_s[k], dtype=np.float64)
                    sc = float(np.max(np.abs(r[np.isfinite(r)]))) if np.isfinite(r).any() else 0.0
                    with np.errstate(all="ignore"):
                        diff = np.abs(v.astype(np.float64) - r)
                        b = ~(diff <= tol * sc) & ~(np.isnan(v) & np.isnan(r))
                    where_bad.append((k, b))
            for what, mask in where_bad:
                cnt = int(np.count_nonzero(mask))
                if not cnt:
                    continue
                j = int(np.argmax(mask))
                flat = int(idx[j]) if idx is not None else leaf.flat_index(j)
                index = tuple(int(i) for i in np.unravel_index(flat, leaf.shape)) if leaf.shape else ()
                if what == "params":
                    got, want = float(p1[j]), float(np.asarray(ref_p)[j])
                else:
                    got, want = float(s1[what][j]), float(np.asarray(ref_s[what])[j])
                related = {
                    ctx.label("grads", leaf.path): float(g[j]),
                    ctx.label("params", leaf.path): float(p0[j]),
                }
                for k in keys:
                    related[ctx.label(k, leaf.path)] = float(s0[k][j])
                where = ctx.where(what, leaf.path)
                hyper = ", ".join(f"{k}={v!r}" for k, v in rule.hyper.items() if v != _default(rule, k))
                out.append(
                    Violation(
                        id="differs-from-reference",
                        where=where,
                        path=leaf.path,
                        message=(
                            f"{where} differs from {rule.name}({hyper}){ctx.at_step() if step is not None else ''} on "
                            f"{cnt} of {mask.size} sampled entries; first at {fmt_index(index)}: {fmt_number(got)}, "
                            f"reference {fmt_number(want)} ("
                            + ", ".join(f"{k}={fmt_number(v)}" for k, v in related.items())
                            + " before the step)."
                        ),
                        hint=(
                            "The update computes something else than the reference rule: a misplaced ε (g/√S + ε "
                            "instead of g/(√S + ε)), another momentum or weight-decay convention, or a bug; run "
                            f"`python -m optcheck audit your_module.py:your_update --rule {rule.name}` to name it."
                        ),
                        step=step,
                        shape=leaf.shape,
                        dtype=str(leaf.dtype).rsplit(".", 1)[-1],
                        count=cnt,
                        counts={"differs": cnt},
                        size=int(mask.size),
                        index=index,
                        value=got,
                        related={"reference": want, **related},
                        sampled=True,
                    )
                )
        return out


# ---------------------------------------------------------------------------
# Plans: where a step's arrays sit in the user's trees, worked out once per structure
# ---------------------------------------------------------------------------


def _walk(tree: Any, leaves: list[Any]) -> Any:
    """The structure of ``tree`` as a hashable value (keys, and the type of each leaf); appends its leaves.

    The leaves come in :func:`optcheck._tree.flatten` order. Mappings other than ``dict``
    are left to the general path (:class:`_Bail`).
    """
    t = type(tree)
    if t is np.ndarray:
        leaves.append(tree)
        return t
    if t is dict:
        return tuple([(k, _walk(v, leaves)) for k, v in tree.items()])
    if isinstance(tree, Mapping):
        raise _Bail
    leaves.append(tree)
    shape = getattr(tree, "shape", None)
    return t if shape is None else (t, len(shape))  # a 0-d torch tensor may be a step counter


@dataclasses.dataclass
class _Plan:
    """Indices of a step's arrays in the walks (:func:`_walk`) of ``params``, ``grads``, ``state``, ``before``.

    Lists are in the order of the parameters' key paths. ``p0_ix`` is None when the old
    parameters are the new ones (no history, or ``before`` without ``"params"``).
    """

    paths: list[Path]
    g_ix: list[int]
    s1_ix: dict[str, list[int]]
    p0_ix: list[int] | None
    s0_ix: dict[str, list[int]]
    g0_ix: list[int] | None
    step_ix: int | None  # the "step" entry after the step (a single leaf)
    step0_ix: int | None  # the "step" entry of a dict ``before`` (a single leaf)
    counters: list[tuple[str, int, int]]  # scalar state key, index before, index after
    draw: list[tuple[Path, int]]  # sampling: the old parameters in their own order (index into the walk)
    draw_from_before: bool
    roles: dict[str, str]


_NO_PLAN = object()


def _locate(tree: Tree, prefix: str, base: int) -> dict[Path, int]:
    """Key path (with the course prefix removed) -> index of the leaf in the walk (``base`` + position)."""
    out: dict[Path, int] = {}
    for j, (path, _) in enumerate(flatten(tree)):
        if prefix and path:
            path = (path[0][len(prefix) :], *path[1:])
        out[path] = base + j
    return out


def _align(located: Mapping[Path, int], paths: list[Path]) -> list[int]:
    """The indices in the order of ``paths`` (:class:`_Bail` when the trees do not line up)."""
    if len(located) != len(paths) or any(p not in located for p in paths):
        raise _Bail
    return [located[p] for p in paths]


def _make_plan(
    guard: Guard,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    before: Snapshot | Mapping[str, Any] | None,
) -> _Plan | None:
    """The plan for one tree structure, resolved as :meth:`Guard._precise` resolves it (None: never fast)."""
    try:
        return _plan(guard, params, grads, state, before)
    except (_Bail, ValueError, TypeError, KeyError, IndexError):
        return None


def _plan(
    guard: Guard,
    params: Tree,
    grads: Tree,
    state: Mapping[str, Any] | None,
    before: Snapshot | Mapping[str, Any] | None,
) -> _Plan:
    rule = guard.rule
    sampled = guard._sampler is not None
    paths = [path for path, _ in flatten(params)]
    if len(set(paths)) != len(paths):
        raise _Bail
    parts, role_of = guard._state_parts(params, state)
    roles = roles_for(rule, role_of)
    new: dict[str, tuple[Tree, str, int]] = {}  # internal key -> (user's tree, prefix, offset in the walk)
    base = 0
    for _, key, prefix, tree in parts:
        new[key] = (tree, prefix, base)
        base += len(flatten(tree))
    history = before is not None
    old: dict[str, tuple[Tree, str, int]] = {}
    p0_ix: list[int] | None = None
    g0_ix: list[int] | None = None
    step0_ix: int | None = None
    draw = [(path, j) for j, (path, _) in enumerate(flatten(params))]
    draw_from_before = False
    if isinstance(before, Snapshot):
        if sampled and before.samples is None:
            raise _Bail
        p0_ix = _align(_locate(before.params, "", 0), paths)
        base = len(flatten(before.params))
        if before.grads is not None:
            g0_ix = _align(_locate(before.grads, "", base), paths)
            base += len(flatten(before.grads))
        if not isinstance(before.state, dict):
            raise _Bail
        for key, tree in before.state.items():
            old[key] = (tree, "", base)
            base += len(flatten(tree))
    elif before is not None:
        if type(before) is not dict or not before.keys() <= _BEFORE_KEYS:
            raise _Bail
        p_old = before.get("params", params)
        src = p_old if sampled else params
        base = 0
        for part, tree in before.items():
            n = len(flatten(tree))
            if part == "params":
                p0_ix = _align(_locate(tree, "", base), paths)
                draw = [(path, base + j) for j, (path, _) in enumerate(flatten(tree))]
                draw_from_before = True
            elif part == "grads" and tree is not None:
                g0_ix = _align(_locate(tree, _detect_prefix(src, tree), base), paths)
            elif part == "state":
                parts0, _ = guard._state_parts(src, tree)
                offset = base
                for _, key, prefix, sub in parts0:
                    old[key] = (sub, prefix, offset)
                    offset += len(flatten(sub))
            base += n
        if "step" in old and not isinstance(old["step"][0], Mapping):
            step0_ix = old["step"][2]
    values = {key: _rekey(tree, prefix) for key, (tree, prefix, _) in new.items()}
    scalar = {k for k, v in values.items() if _is_scalar_state(rule, k, roles, v)}
    if sampled and any(_is_arraylike(values[k]) for k in scalar):
        raise _Bail  # a counter kept as an array: the precise path decides what to gather
    keys = [k for k in new if k not in scalar and (k in old or not history)]
    s1_ix = {k: _align(_locate(new[k][0], new[k][1], new[k][2]), paths) for k in keys}
    s0_ix = {k: _align(_locate(old[k][0], old[k][1], old[k][2]), paths) for k in keys} if history else {}
    counters = []
    if history:
        for k in new:
            if k in old and k in scalar:
                if isinstance(old[k][0], Mapping):
                    raise _Bail
                counters.append((k, old[k][2], new[k][2]))
    step_ix = new["step"][2] if "step" in new and not isinstance(new["step"][0], Mapping) else None
    gp = _detect_prefix(params, grads)
    return _Plan(
        paths=paths,
        g_ix=_align(_locate(grads, gp, 0), paths),
        s1_ix=s1_ix,
        p0_ix=p0_ix,
        s0_ix=s0_ix,
        g0_ix=g0_ix,
        step_ix=step_ix,
        step0_ix=step0_ix,
        counters=counters,
        draw=draw,
        draw_from_before=draw_from_before,
        roles=roles,
    )


def _default(rule: Rule, name: str) -> Any:
    for spec in type(rule).hyper_specs():
        if spec.name == name:
            return spec.default
    return None


def _sample_tree(tree: Tree, samples: Mapping[Path, np.ndarray | None]) -> Tree:
    leaves = []
    for path, x in flatten(tree):
        idx = samples.get(path)
        if idx is None or not _is_arraylike(x):
            leaves.append(_copy(x) if _is_arraylike(x) else x)
        else:
            leaves.append(_gather(x, idx, {}))
    return unflatten(tree, leaves)


def _changed(before: Any, after: Any) -> bool:
    """Whether a tree differs from its value before the step (structure, shape or any entry; NaN equals NaN)."""
    b, a = flatten(before), flatten(after)
    if [p for p, _ in b] != [p for p, _ in a]:
        return True
    for (_, x0), (_, x1) in zip(b, a, strict=True):
        try:
            n0, n1 = np.asarray(to_numpy(x0)), np.asarray(to_numpy(x1))
        except (TypeError, ValueError):
            return x0 is not x1
        if n0.shape != n1.shape or not np.array_equal(n0, n1, equal_nan=n0.dtype.kind in "fc"):
            return True
    return False


def _is_number(x: Any) -> bool:
    if type(x) is np.ndarray or type(x) is dict:
        return False
    if isinstance(x, Mapping):
        return False
    if isinstance(x, (int, float, np.generic)) and not isinstance(x, bool):
        return True
    return _is_arraylike(x) and len(_shape(x)) == 0 and x is not None and _is_torch(x)


def _scalar_step(x: Any) -> int | None:
    if x is None or isinstance(x, Mapping):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return int(v) if math.isfinite(v) and v == int(v) else None


# ---------------------------------------------------------------------------
# guarded
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _CallShape:
    """Which arguments of the user's update function are what."""

    params: str
    grads: str
    states: list[str]
    step: str | None


def _classify(arguments: Mapping[str, Any]) -> _CallShape:
    names = list(arguments)
    if len(names) < 2:
        raise TypeError(
            "a guarded update function takes the parameters and the gradients as its first two arguments, "
            f"got {names}"
        )
    params_name, grads_name = names[0], names[1]
    params = arguments[params_name]
    states: list[str] = []
    step: str | None = None
    for name in names[2:]:
        value = arguments[name]
        if isinstance(params, Mapping) and isinstance(value, Mapping) and value:
            if _detect_prefix(params, value) or set(value) == set(params):
                states.append(name)
        elif _is_arraylike(params) and _is_arraylike(value) and _shape(value) == _shape(params):
            states.append(name)
        elif (
            naming.is_step_name(name) and isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        ):
            step = name
    return _CallShape(params_name, grads_name, states, step)


def _split_result(result: Any, call: _CallShape, inputs: Mapping[str, Any]) -> tuple[Tree, dict[str, Tree]]:
    """The new params and state trees from what the function returned (or from its mutated inputs)."""
    params = inputs[call.params]
    states = {n: inputs[n] for n in call.states}
    if result is None:
        return params, states
    if isinstance(result, tuple):
        items = list(result)
        if len(items) == 1 + len(call.states):
            return items[0], dict(zip(call.states, items[1:], strict=True))
        if len(items) == len(call.states) + 2 and isinstance(items[-1], (int, np.integer)):
            return items[0], dict(zip(call.states, items[1:-1], strict=True))
        raise ValueError(
            f"the update function returned a tuple of {len(items)} items; expected ({call.params}, "
            f"{', '.join(call.states)}) in that order, or nothing when it updates its arguments in place"
        )
    return result, states


def _call_hyper(
    rule: Rule, arguments: Mapping[str, Any], call: _CallShape
) -> tuple[dict[str, Any], str | None]:
    """The hyperparameters the call passes (by any name of :mod:`optcheck.rules.naming`), and course L2.

    Returns ``({rule name: value}, note)``; a course L2 pair (``lambd``/``reg_param`` and the
    batch size ``m``) becomes ``weight_decay = λ/m``, which :meth:`Guard.call` applies to the
    weights only (``W1, W2, ...``), as the course's cost does; ``note`` says so.
    """
    taken = {call.params, call.grads, *call.states, call.step}
    numbers = {
        n: v
        for n, v in arguments.items()
        if n not in taken and isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    }
    meaning = naming.resolve_hypers(list(numbers), rule)
    own = set(naming.hyper_names(rule))
    reg: tuple[str, float] | None = None
    batch: tuple[str, float] | None = None
    given: dict[str, Any] = {}
    for name, value in numbers.items():
        if naming.is_course_l2(name, rule):
            reg = (name, float(value))
        elif name in naming.BATCH_NAMES and name not in own:
            batch = (name, float(value))
        elif meaning.get(name) is not None:
            given[name] = float(value) if isinstance(value, (float, np.floating)) else int(value)
    hyper = naming.normalise_hyper(rule, given, what="the call's ")
    note = None
    if reg is not None and reg[1] != 0 and "weight_decay" in own:
        wd = reg[1] / batch[1] if batch is not None and batch[1] > 0 else reg[1]
        hyper["weight_decay"] = wd
        formula = f"{reg[0]}/{batch[0]}" if batch is not None else reg[0]
        note = f"course L2: weight_decay = {formula} = {wd:.6g} on the weights W1, W2, ... (not the biases)"
    return hyper, note


def guarded(
    update_fn: Callable[..., Any],
    rule: str | Rule | None = None,
    *,
    mode: str | Callable[[list[Violation]], Any] = "raise",
    every: int = 1,
    sample: int | None = None,
    shadow: bool = False,
    roles: Mapping[str, str] | None = None,
    overrides: Mapping[Any, Mapping[str, Any]] | None = None,
    skip: tuple[str, ...] | list[str] = (),
    seed: int = 0,
    **hyper: Any,
) -> Callable[..., Any]:
    """Wrap a user's update function so that every call is checked before and after.

    ``update = optcheck.guarded(update_parameters_with_rmsprop, rule="rmsprop", lr=0.01, alpha=0.9)``
    and the loop calls ``update(...)`` as before. The function takes the parameters and
    the gradients first, then its state trees (course style ``S``, ``V``, ``v``, ``s``:
    dicts keyed like the gradients, ``dW1`` for ``W1``) and possibly the step ``t``; it may
    update its arguments in place or return ``(parameters, *states)``. The guard copies the
    inputs before each checked call (only the sampled coordinates with ``sample=K``) and
    checks the step afterwards; the keywords are those of :class:`Guard`. The wrapper has
    the function's name and docstring, and ``wrapper.guard`` is the :class:`Guard`.
    """
    if not callable(update_fn):
        raise TypeError(f"update_fn must be a function, got {type(update_fn).__name__}")
    guard = Guard(
        rule,
        mode,
        every,
        sample,
        roles=roles,
        overrides=overrides,
        shadow=shadow,
        skip=skip,
        seed=seed,
        **hyper,
    )

    @functools.wraps(update_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return guard.call(update_fn, *args, **kwargs)

    wrapper.guard = guard  # type: ignore[attr-defined]
    return wrapper


def _bind(
    sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, defaults: bool = False
) -> dict[str, Any]:
    if sig is None:
        out = {f"args[{i}]": a for i, a in enumerate(args)}
        out.update(kwargs)
        return out
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(
            f"the guarded update function was called with arguments it does not accept: {e}"
        ) from None
    if defaults:
        bound.apply_defaults()
    out = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out.update({f"{name}[{i}]": v for i, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------
# trap
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def trap(
    model: Any = None,
    *,
    invalid: bool = True,
    divide: bool = True,
    overflow: bool = True,
    underflow: bool = False,
) -> Iterator[None]:
    """Stop at the first NaN or inf made inside the block, naming your source line (numpy) or module (torch).

    numpy: inside ``with optcheck.trap():`` numpy's "invalid value" (NaN from √ of a negative
    or 0/0), "divide by zero" and "overflow" warnings become an :class:`~optcheck.InvariantError`
    whose message quotes the file, line and code that produced it.

    torch: ``with optcheck.trap(model):`` hooks every module of ``model`` for the block and
    raises from the forward call or from ``loss.backward()`` at the first module whose output,
    or whose gradient in the backward pass, went non-finite, naming the module by its
    qualified name (``'encoder.fc1' (Linear)``) with the offending tensor's shape, number of
    NaN/inf entries and the range of its finite entries; a parameter's non-finite gradient is
    named too. Where no module can be blamed (the loss, code between modules) it says so and
    points to ``torch.autograd.set_detect_anomaly(True)``. ``trap()`` without a model, when
    torch is imported, hooks every module called in the block, named by class. The hooks are
    removed on leaving the block. Usable as a decorator.
    """
    for arg, v in (
        ("invalid", invalid),
        ("divide", divide),
        ("overflow", overflow),
        ("underflow", underflow),
    ):
        _v.check_bool(arg, v)
    kinds = {"invalid": invalid, "divide": divide, "over": overflow, "under": underflow}
    torch = sys.modules.get("torch")
    if model is not None and (torch is None or not isinstance(model, torch.nn.Module)):
        raise TypeError(
            "trap(model) takes a torch.nn.Module (its modules are hooked to name the first that makes a NaN), "
            f"got {type(model).__name__}; for numpy code use trap() without arguments"
        )
    settings = {k: ("raise" if v else "ignore") for k, v in kinds.items()}
    hooks: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if torch is not None:
        from ._torchtrap import torch_hooks

        hooks = torch_hooks(model)
    try:
        with hooks, np.errstate(**settings):  # type: ignore[arg-type]
            yield
    except InvariantError:
        raise
    except FloatingPointError as e:
        frame = _user_frame(e.__traceback__)
        if frame is None:
            raise
        filename, lineno, code = frame
        msg = f"{e} at {filename}:{lineno}: {code}"
        err = InvariantError(
            [
                Violation(
                    id="non-finite",
                    where=f"{os.path.basename(filename)}:{lineno}",
                    message=f"numpy: {msg}.",
                    hint=(
                        "This operation is the first to produce NaN or inf: look at its inputs just before this "
                        "line (a negative number under a square root, 0/0, log of 0, exp of a large number)."
                    ),
                    became=True,
                )
            ],
            message=f"numpy: {msg}",
        )
        raise err from None


def _user_frame(tb: types.TracebackType | None) -> tuple[str, int, str] | None:
    """The innermost traceback frame outside numpy and optcheck: (file, line, code)."""
    np_dir = os.path.dirname(np.__file__)
    here = os.path.dirname(os.path.abspath(__file__))
    found = None
    for fs in traceback.extract_tb(tb):
        f = os.path.abspath(fs.filename)
        if f.startswith(np_dir) or f.startswith(here) or "contextlib" in f:
            continue
        found = (fs.filename, int(fs.lineno or 0), (fs.line or "").strip())
    return found
