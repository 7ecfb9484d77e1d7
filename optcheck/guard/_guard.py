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

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .. import rules as _rules
from .._core import validate as _v
from .._core.arrays import is_array as _is_arraylike
from .._core.arrays import shape as _shape
from .._core.errors import UsageError, UsageTypeError
from .._core.tree import Path, Tree, flatten
from ..invariants import (
    INVARIANTS,
    InvariantError,
    InvariantWarning,
    Violation,
)
from ..rules import Rule, naming
from ._call import _bind, _call_hyper, _CallShape, _classify, _split_result
from ._config import (
    _check_mode,
    _detect_prefix,
    _env_mode,
    _rekey,
    _resolve_rule,
    _user_stacklevel,
    logger,
)
from ._fast import _Plan, fast_screen
from ._precise import precise_check
from ._sampling import (
    Snapshot,
    _changed,
    _copy_tree,
    _Drawn,
    _is_number,
    _sample_tree,
    _Sampler,
    _scalar_step,
)

__all__ = ["Guard", "guarded"]


# ---------------------------------------------------------------------------
# Array helpers
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Mode
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# State names
# ---------------------------------------------------------------------------


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

    ``guard.notes`` lists what the guard assumed about your names (a state it ignored because
    the function never changes it, a course L2 read from the call).

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
                raise UsageError(f"{label}={value!r} is invalid; expected a whole number >= {low}")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise UsageError(
                f"sample={sample!r} is invalid; expected None (check every entry) or a whole number >= 1"
            )
        if not isinstance(shadow, bool):
            raise UsageError(f"shadow={shadow!r} is invalid; expected True or False")
        if shadow and self.rule is None:
            raise UsageError(
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
            raise UsageError(f"names has unexpected key(s) {bad_names}; expected 'params' and/or 'grads'")
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
                if not naming.is_course_weight(k) and (k,) not in overrides:
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

    def _fast(self, *args: Any) -> tuple[bool, Any]:
        """The fast path (:func:`optcheck.guard._fast.fast_screen`): ``(True, _)`` when the step is clean."""
        return fast_screen(self, *args)

    def _precise(self, *args: Any, **kwargs: Any) -> list[Violation]:
        """The precise path (:func:`optcheck.guard._precise.precise_check`): every invariant, described."""
        return precise_check(self, *args, **kwargs)

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


# ---------------------------------------------------------------------------
# Plans: where a step's arrays sit in the user's trees, worked out once per structure
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# guarded
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# trap
# ---------------------------------------------------------------------------


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
        raise UsageTypeError(f"update_fn must be a function, got {type(update_fn).__name__}")
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
