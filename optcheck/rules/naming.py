"""The one map from what users call things to the rules' keys and roles.

People name an optimizer's pieces in many ways: the course writes ``v, s, t`` and
``learning_rate, beta1, beta2, epsilon``, torch ``exp_avg, exp_avg_sq, step`` and ``lr, betas,
eps``, cs231n ``cache`` and ``decay_rate``, Adadelta code ``Eg2, Edx2``, school code
``alpha`` for the learning rate. Every front end (the guard, the audit, the testing helpers,
:func:`optcheck.rules.get`) asks this module, so they all accept the same names.

**Hyperparameters.** :data:`HYPER_ALIASES` maps a user's name to the rule hyperparameters it
may mean, in order of preference; the first one the rule has wins. A rule's own names always
win, with one judgement by context: ``alpha`` is RMSprop's decay, unless another name of the
same call already sets the decay (``beta``, ``beta2``, ``rho``, ``decay_rate``, ...) and no name
sets the learning rate, in which case ``alpha`` is the learning rate (school style
``update_variables_RMSProp(alpha, beta2, epsilon, ...)``). In every rule without an ``alpha``
of its own, ``alpha`` is the learning rate. :func:`resolve_hypers` resolves the names of one call
together; :func:`normalise_hyper` turns ``{user name: value}`` into the rule's names and accepts
two spellings of the same hyperparameter only when their values agree.

Course L2 names (``lambd``, ``reg_param``, ...; :data:`COURSE_L2_NAMES`) mean the coefficient
of the cost's ``(λ/2m)·ΣW²`` term: the gradient gains ``(λ/m)·W``, weights only. Given alone to
:func:`optcheck.rules.get` they set ``weight_decay``; a front end that knows the batch size
divides by it (see :func:`is_course_l2`).

**State names.** :func:`map_states` maps the names of a user's state trees (``S``, ``v``,
``cache``, ``moment2``, ``Eg2``, ...) to the rule's state keys and roles: the names the user
assigned (``roles=``), then the rule's own keys, then each rule's usual names
(:data:`RULE_STATE_ALIASES`), then the usual names of each role (:data:`STATE_GROUPS`, with
``v`` read as the second moment beside ``m``), then a single name left for a single key. A
name it cannot place is returned in :attr:`StateMap.unplaced`: the front end ignores it with
a note when the target never changes it (the classic course RMSprop passes an unused ``V``),
and otherwise raises :meth:`StateMap.error`, one message naming it and the valid choices.

**Step counters.** :func:`is_step_name` (``t``, ``step``, ``iteration``, ``k``, ...).

**Arguments.** :data:`PARAMS_NAMES`, :data:`GRADS_NAMES`, :data:`STATE_ARG_NAMES`,
:data:`BATCH_NAMES`: the usual names of an update function's arguments, for binding.

**Keys.** Course keys (``dW1`` for ``W1``, ``cache_dW1`` in one flat dict, layers from 0 or 1)
are matched by :mod:`optcheck._core.names`, re-exported here.

Examples:
    >>> from optcheck import rules
    >>> from optcheck.rules import naming
    >>> naming.map_states(rules.get("adam"), ["v", "s"]).keys
    {'v': 'exp_avg', 's': 'exp_avg_sq'}
    >>> naming.map_states(rules.get("rmsprop"), ["V", "S"]).unplaced
    ('V',)
    >>> naming.resolve_hypers(["alpha", "beta2", "epsilon"], rules.get("rmsprop"))
    {'alpha': 'lr', 'beta2': 'alpha', 'epsilon': 'eps'}
    >>> naming.normalise_hyper(rules.get("adam"), {"learning_rate": 0.01, "b1": 0.8})
    {'lr': 0.01, 'beta1': 0.8}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._core.errors import UsageError
from .._core.names import KEY_FORMS as KEY_FORMS
from .._core.names import key_prefix as key_prefix
from .._core.names import layer_base as layer_base
from .._core.names import match_grad_keys as match_grad_keys
from .._core.names import rekey as rekey
from .._core.names import renumber as renumber
from .._core.names import split_state_key as split_state_key
from ._base import ROLES, Rule

__all__ = [
    "BATCH_NAMES",
    "CALLBACK_NAMES",
    "COMMON_ALIASES",
    "COURSE_L2_NAMES",
    "GRADFN_NAMES",
    "GRADS_NAMES",
    "HYPER_ALIASES",
    "KEY_FORMS",
    "LOOP_NAMES",
    "LR_NAMES",
    "MORE_GRADS_NAMES",
    "MORE_PARAMS_NAMES",
    "PARAMS_NAMES",
    "PLURAL_PARAMS",
    "RULE_STATE_ALIASES",
    "STATE_ARG_NAMES",
    "STATE_GROUPS",
    "STEP_NAMES",
    "StateMap",
    "argument_roles",
    "changed_hyper",
    "hyper_aliases",
    "hyper_names",
    "is_course_l2",
    "is_course_weight",
    "is_grads_name",
    "is_params_name",
    "is_step_name",
    "key_prefix",
    "layer_base",
    "looks_like_state",
    "looks_like_state_argument",
    "map_states",
    "match_grad_keys",
    "normalise_hyper",
    "rekey",
    "renumber",
    "resolve_hyper",
    "resolve_hypers",
    "role_or_key",
    "split_state_key",
    "state_group",
]

RuleLike = Rule | type[Rule]


def _words(text: str) -> list[str]:
    return text.split()


# ---------------------------------------------------------------------------------------------
# The arguments of an update function
# ---------------------------------------------------------------------------------------------

PARAMS_NAMES: tuple[str, ...] = (
    "parameters",
    "params",
    "param",
    "w",
    "x",
    "p",
    "theta",
    "weights",
    "weight",
    "variables",
    "var",
    "W",
)
"""Usual names of the parameters argument (``var`` in school code ``update_variables_Adam(..., var, grad, ...)``)."""

GRADS_NAMES: tuple[str, ...] = (
    "grads",
    "gradients",
    "grad",
    "dw",
    "dx",
    "g",
    "dparams",
    "gradient",
    "dp",
    "dtheta",
    "dW",
    "d_params",
    "dvar",
)
"""Usual names of the gradients argument."""

STATE_ARG_NAMES: tuple[str, ...] = ("state", "opt_state", "optimizer_state", "optim_state", "states")
"""Usual names of one argument holding the whole optimizer state (functional style)."""

MORE_PARAMS_NAMES: tuple[str, ...] = ("variable", "data", "x0", "w0", "theta0", "params0", "args", "ws")
"""Further names of the parameters (``data`` in cs231n-like code, ``x0`` of loop drivers, ``args`` of tuples)."""

MORE_GRADS_NAMES: tuple[str, ...] = ("dweights", "dparam", "grad_w", "grad_params", "gs", "dws")
"""Further names of the gradients."""

GRADFN_NAMES: tuple[str, ...] = (
    "grad_fn",
    "grad_func",
    "grad_function",
    "grad_fun",
    "gradient_fn",
    "gradient_func",
    "gradient_function",
    "grad_f",
    "gradfn",
    "df",
    "dfdx",
    "fprime",
    "f_grad",
    "fgrad",
    "g_fn",
    "obj_grad",
    "jac",
)
"""Usual names of an argument that is a function returning the gradient (``update(w, grad_func)``)."""

LOOP_NAMES: tuple[str, ...] = (
    "num_iters",
    "n_iters",
    "num_iterations",
    "n_iterations",
    "max_iter",
    "max_iters",
    "maxiter",
    "iterations",
    "epochs",
    "num_steps",
    "n_steps",
    "num_epochs",
    "n_epochs",
    "niter",
)
"""Usual names of a loop driver's number of iterations (``adam(grad, x0, num_iters=100)``)."""

CALLBACK_NAMES: tuple[str, ...] = ("callback", "cb", "callback_fn", "callback_func", "hook", "log_fn")
"""Usual names of a loop driver's callback."""

PLURAL_PARAMS: tuple[str, ...] = (
    "parameters",
    "params",
    "weights",
    "variables",
    "args",
    "param_list",
    "params_list",
    "ws",
    "xs",
    "thetas",
    "vars",
    "grads",
    "gradients",
    "dweights",
    "dparams",
    "d_params",
    "grad_list",
    "grads_list",
    "gs",
    "dws",
)
"""Names of parameters (or gradients) that usually hold several arrays (a dict or a list), not one."""


def is_params_name(name: str) -> bool:
    """Whether ``name`` is a usual name of the parameters argument."""
    return name in PARAMS_NAMES or name.lower() in MORE_PARAMS_NAMES


def is_grads_name(name: str) -> bool:
    """Whether ``name`` is a usual name of the gradients argument."""
    return name in GRADS_NAMES or name.lower() in MORE_GRADS_NAMES


def argument_roles(names: Sequence[str]) -> dict[str, str]:
    """The roles the names of a function's arguments give them, as far as names alone tell.

    ``"params"``, ``"grads"``, ``"grad_fn"`` (a function returning the gradient; ``grad`` beside
    ``num_iters`` or ``callback`` is one), ``"state"`` (a state tree made by the caller),
    ``"ostate"`` (one argument holding the whole state), ``"step"``, ``"callback"``,
    ``"iters"``; pairs named by a gradient-key convention (``w``/``dw``, ``b``/``db``) are
    parameters and gradients. Names that say none of these are left out (hyperparameters are
    resolved against a rule by :func:`resolve_hypers`). The guard and the audit both bind by it.

    >>> argument_roles(["alpha", "beta1", "beta2", "epsilon", "var", "grad", "v", "s", "t"])
    {'var': 'params', 'grad': 'grads', 'v': 'state', 's': 'state', 't': 'step'}
    """
    from .._core.names import grad_key_candidates

    loop = any(n.lower() in LOOP_NAMES or n.lower() in CALLBACK_NAMES for n in names)
    roles: dict[str, str] = {}
    for n in names:
        low = n.lower()
        if low in GRADFN_NAMES or (loop and low in ("grad", "gradient", "g", "grads")):
            roles[n] = "grad_fn"
        elif low in CALLBACK_NAMES:
            roles[n] = "callback"
        elif loop and low in LOOP_NAMES:
            roles[n] = "iters"
        elif is_params_name(n):
            roles[n] = "params"
        elif is_grads_name(n):
            roles[n] = "grads"
        elif n in STATE_ARG_NAMES:
            roles[n] = "ostate"
        elif is_step_name(n):
            roles[n] = "step"
        elif n in HYPER_ALIASES or low in HYPER_ALIASES or low in LR_NAMES or is_course_l2(n):
            continue
        elif n in BATCH_NAMES and any(is_course_l2(o) for o in names):
            continue  # ``m`` beside ``reg_param`` is the batch size; beside ``s`` the first moment
        elif looks_like_state_argument(n):
            roles[n] = "state"
    for n in names:
        for cand in grad_key_candidates(n)[1:]:
            if cand in names and roles.get(n) in (None, "params") and roles.get(cand) in (None, "grads"):
                roles[n], roles[cand] = "params", "grads"
                break
    return {n: roles[n] for n in names if n in roles}


_STATE_ARG_EXTRAS = frozenset(
    _words(
        "accum accumulators velocity velocities buffers bufs moments caches momentum_buffers "
        "sq_avgs square_avgs exp_avgs exp_avg_sqs m_t v_t"
    )
)


def looks_like_state_argument(name: str) -> bool:
    """Whether an argument called ``name`` holds a state (``v``, ``S``, ``cache``, ``ms``, ``v_dw``, ``bufs``)."""
    low = name.lower()
    if looks_like_state(name) or low in _STATE_ARG_EXTRAS:
        return True
    if low.endswith("s") and len(low) > 1 and (low[:-1] in _STATE_ARG_EXTRAS or looks_like_state(name[:-1])):
        return True
    head = name.split("_")[0]
    return (
        "_" in low
        and head.lower() not in ("d", "grad")
        and (head.lower() in _STATE_ARG_EXTRAS or looks_like_state(head))
    )


# ---------------------------------------------------------------------------------------------
# Step counters
# ---------------------------------------------------------------------------------------------

STEP_NAMES: frozenset[str] = frozenset(
    _words(
        "t step steps timestep time_step iteration iterations iter iters it k n_iter "
        "niter num_iter step_count n_steps num_steps step_num t_step adam_counter"
    )
)
"""Names of a step counter (compared lower-cased): the number of steps taken, from 0 or 1."""


def is_step_name(name: str) -> bool:
    """Whether ``name`` is a usual name of a step counter (``t``, ``step``, ``iteration``, ``k``, ...)."""
    return _base(name) in STEP_NAMES


# ---------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------

LR_NAMES: tuple[str, ...] = (
    "lr",
    "learning_rate",
    "learning_rate_init",
    "learningrate",
    "lrate",
    "step_size",
    "stepsize",
    "eta",
    "alpha",
)
"""Names of the learning rate (``alpha`` only where the rule has no ``alpha`` of its own, see the module)."""

COURSE_L2_NAMES: tuple[str, ...] = (
    "lambd",
    "lambda_",
    "lam",
    "reg_param",
    "reg",
    "l2_reg",
    "reg_lambda",
    "lambda_reg",
    "l2_lambda",
    "reg_strength",
)
"""Names of the course's L2 coefficient λ (cost + (λ/2m)·ΣW², so the gradient gains (λ/m)·W on weights)."""

BATCH_NAMES: tuple[str, ...] = (
    "batch_size",
    "mini_batch_size",
    "minibatch_size",
    "m",
    "n_samples",
    "num_examples",
)
"""Names of the batch size ``m`` that divides a course L2 coefficient."""

HYPER_ALIASES: Mapping[str, tuple[str, ...]] = {
    # the learning rate
    **{n: ("lr",) for n in LR_NAMES},
    "lr_": ("lr",),
    # the first decay: momentum, RMSprop's alpha, Adadelta's rho, Adam's beta1
    "beta": ("alpha", "rho", "momentum", "beta1"),
    "beta1": ("beta1",),
    "beta_1": ("beta1",),
    "b1": ("beta1",),
    "decay1": ("beta1",),
    "beta2": ("beta2", "alpha", "rho"),
    "beta_2": ("beta2", "alpha", "rho"),
    "b2": ("beta2", "alpha", "rho"),
    "decay2": ("beta2", "alpha", "rho"),
    "rho": ("rho", "alpha"),
    "decay_rate": ("alpha", "rho", "beta2"),
    "decay": ("alpha", "rho"),
    "gamma": ("alpha", "rho", "momentum"),
    "momentum": ("momentum", "beta1"),
    "mu": ("momentum", "beta1"),
    "mass": ("momentum", "beta1"),
    # epsilon
    "eps": ("eps",),
    "epsilon": ("eps",),
    "e": ("eps",),
    "eps_": ("eps",),
    "epsilon_": ("eps",),
    # weight decay (course L2 names too: see COURSE_L2_NAMES)
    "weight_decay": ("weight_decay",),
    "wd": ("weight_decay",),
    "l2": ("weight_decay",),
    "weight_decay_rate": ("weight_decay",),
    "decay_weight": ("weight_decay",),
    "lambda_wd": ("weight_decay",),
    "lambda": ("weight_decay",),
    **{n: ("weight_decay",) for n in COURSE_L2_NAMES},
    # rule-specific
    "schedule_decay": ("momentum_decay",),
    "momentum_decay": ("momentum_decay",),
    "initial_accumulator": ("initial_accumulator_value",),
    "init_acc": ("initial_accumulator_value",),
    "initial_accumulator_value": ("initial_accumulator_value",),
    "lr_decay": ("lr_decay",),
    "nesterov": ("nesterov",),
    "amsgrad": ("amsgrad",),
    "centered": ("centered",),
    "dampening": ("dampening",),
}
"""A user's hyperparameter name (lower-cased) -> the rule hyperparameters it may mean, preferred first."""

COMMON_ALIASES: tuple[str, ...] = (
    "learning_rate",
    "epsilon",
    "beta",
    "beta1",
    "beta2",
    "decay_rate",
    "rho",
    "momentum",
    "reg_param",
)
"""The aliases an error message suggests first."""

#: Names that set RMSprop's (or Adadelta's) decay when written beside ``alpha``.
_DECAY_NAMES = frozenset(_words("beta beta2 beta_2 b2 decay2 rho decay_rate decay gamma"))


def hyper_names(rule: RuleLike) -> tuple[str, ...]:
    """The rule's own hyperparameter and convention names, in declaration order."""
    cls = rule if isinstance(rule, type) else type(rule)
    return tuple(s.name for s in cls.hyper_specs())


def _candidates(name: str) -> tuple[str, ...]:
    return HYPER_ALIASES.get(name, HYPER_ALIASES.get(name.lower(), ()))


def resolve_hyper(name: str, rule: RuleLike | Sequence[str], context: Iterable[str] = ()) -> str | None:
    """The rule hyperparameter that ``name`` means, or ``None``.

    ``rule`` is a rule, a rule class or the list of its hyperparameter names; ``context`` the
    other names of the same call (they decide what ``alpha`` means, see the module docstring).
    """
    return resolve_hypers([name, *[c for c in context if c != name]], rule)[name]


def resolve_hypers(names: Iterable[str], rule: RuleLike | Sequence[str]) -> dict[str, str | None]:
    """What each of the names of one call means for ``rule``: user name -> rule hyperparameter or ``None``."""
    own = tuple(rule) if not isinstance(rule, (Rule, type)) else hyper_names(rule)
    names = list(dict.fromkeys(names))
    out: dict[str, str | None] = {}
    for name in names:
        if name in own:
            out[name] = name
            continue
        out[name] = next((c for c in _candidates(name) if c in own), None)
    if "alpha" in out and "alpha" in own and "lr" in own:
        others = [n for n in names if n != "alpha"]
        sets_decay = any(out[n] == "alpha" and n.lower() in _DECAY_NAMES for n in others)
        sets_lr = any(out[n] == "lr" for n in others)
        if sets_decay and not sets_lr:
            out["alpha"] = "lr"
    return out


def hyper_aliases(rule: RuleLike | Sequence[str]) -> dict[str, str]:
    """Every alias that means one of ``rule``'s hyperparameters on its own: alias -> rule name."""
    out = {}
    for alias in HYPER_ALIASES:
        r = resolve_hypers([alias], rule)[alias]
        if r is not None and alias != r:
            out[alias] = r
    return out


def is_course_l2(name: str, rule: RuleLike | Sequence[str] | None = None) -> bool:
    """Whether ``name`` is a course L2 coefficient (``lambd``, ``reg_param``...) rather than a rule's own name.

    ASGD has a ``lambd`` of its own: with ``rule`` given, the rule's own names are never course L2.
    """
    if rule is not None:
        own = tuple(rule) if not isinstance(rule, (Rule, type)) else hyper_names(rule)
        if name in own:
            return False
    return name.lower() in COURSE_L2_NAMES


def is_course_weight(key: object) -> bool:
    """Whether a course parameter key is a weight (``W1``, ``W2``...): the course's L2 decays these, not the biases."""
    return isinstance(key, str) and key.startswith("W")


def changed_hyper(rule: Rule, keep: Iterable[str] = ()) -> dict[str, Any]:
    """``rule``'s hyperparameters that differ from their defaults (and those named in ``keep``), in order.

    What a message or a reproduction writes to name the rule: ``rules.get("rmsprop", alpha=0.9)``.
    """
    kept = set(keep)
    defaults = {s.name: s.default for s in type(rule).hyper_specs()}
    return {k: v for k, v in rule.hyper.items() if k in kept or v != defaults.get(k)}


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        if isinstance(a, bool) or isinstance(b, bool):
            return bool(a == b)
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        try:
            return bool(a == b)
        except Exception:  # an odd __eq__ means "not the same"
            return False
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=0.0) or (math.isnan(fa) and math.isnan(fb))


def normalise_hyper(rule: RuleLike, given: Mapping[str, Any], *, what: str = "") -> dict[str, Any]:
    """``given`` under the rule's own names: ``{"learning_rate": 0.01}`` -> ``{"lr": 0.01}`` for adam.

    Names the rule does not know are kept as they are (the rule then refuses them with its
    list of valid names); torch's tuples (``betas=``) too. Two names of the same
    hyperparameter are accepted when their values agree, otherwise :class:`UsageError`
    names both. ``what`` prefixes the names in messages (``"--hyper "``).
    """
    cls = rule if isinstance(rule, type) else type(rule)
    meaning = resolve_hypers(list(given), rule)
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, value in given.items():
        target = meaning[name] or name
        if target in out:
            if not _same(out[target], value):
                raise UsageError(
                    f"{cls.name}: {what}{source[target]}={out[target]!r} and {what}{name}={value!r} both set "
                    f"{target}; give one (or the same value twice)"
                )
            continue
        out[target] = value
        source[target] = name
    return out


# ---------------------------------------------------------------------------------------------
# State names
# ---------------------------------------------------------------------------------------------

STATE_GROUPS: Mapping[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "first": (
        ("first-moment", "momentum"),
        frozenset(
            _words(
                "m mt m_t m1 exp_avg first_moment moment1 moment_1 first mean grad_avg avg_grad g_avg mg m_w"
            )
        ),
    ),
    "velocity": (
        ("momentum", "first-moment"),
        frozenset(_words("v vel velocity velocities mom momentum momentum_buffer buf buffer moment")),
    ),
    "second": (
        ("second-moment", "accumulator", "norm"),
        frozenset(
            _words(
                "s st s_t sq sq_avg square_avg exp_avg_sq second_moment moment2 moment_2 second "
                "r g2 grad_sq grad_squared sq_grads squared avg_sq cache ms mean_square v2 vt "
                "v_t eg2 e_g2 accum_grad accumulated_grads h sum sum_sq squared_sum acc accum "
                "accumulator"
            )
        ),
    ),
    "max": (
        ("max-second-moment",),
        frozenset(
            _words("vmax v_max max_v vhat v_hat vhat_max v_hat_max max_exp_avg_sq s_max smax max_s max_sq")
        ),
    ),
    "norm": (("norm",), frozenset(_words("u ut u_t exp_inf inf_norm norm max_norm"))),
    "previous": (
        ("previous-gradient",),
        frozenset(_words("prev prev_grad previous prev_g g_prev grad_prev last_grad old_grad")),
    ),
    "step-size": (
        ("step-size",),
        frozenset(_words("step_size step_sizes delta deltas steps_ lr_i")),
    ),
    "average": (
        ("average",),
        frozenset(_words("ax avg average x_avg param_avg avg_param mean_param theta_avg")),
    ),
}
"""Group -> (the roles it fits, preferred first; the usual names, lower-cased)."""

RULE_STATE_ALIASES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "adagrad": {"sum": frozenset(_words("g gt g_t hist historical_grad grad_sum_sq sum_of_squares"))},
    "adadelta": {
        "square_avg": frozenset(
            _words(
                "eg2 e_g2 eg e_g accum_grad accumulated_grads acc_grad avg_sq_grad square_avg "
                "sq_avg s v cache g2 r"
            )
        ),
        "acc_delta": frozenset(
            _words(
                "edx2 e_dx2 edx e_dx ex2 dx2 eu2 delta acc_delta accum_delta delta_acc d dx_acc "
                "accum_update acc_update accumulated_updates accumulated_delta_vars u x2"
            )
        ),
    },
    "adafactor": {
        "row_var": frozenset(_words("row rows r vr v_r v_row row_var exp_avg_sq_row vr_t")),
        "col_var": frozenset(_words("col cols c vc v_c v_col col_var exp_avg_sq_col vc_t")),
        "variance": frozenset(_words("v variance exp_avg_sq s sq_avg")),
    },
}
"""Per rule: state key -> its usual names (lower-cased), for rules whose keys share a role
(Adadelta, Adafactor) or whose usual name means something else elsewhere (Adagrad's ``G``)."""


def _base(name: str) -> str:
    """``name`` reduced to what the tables list: ``self.m`` -> ``m``, ``state['v']`` -> ``v``, ``_s`` -> ``s``."""
    base = str(name)
    if "'" in base or '"' in base:
        parts = base.replace('"', "'").split("'")
        if len(parts) >= 3:
            base = parts[-2]
    base = base.rsplit(".", 1)[-1]
    stripped = base.strip("_")
    return (stripped or base).lower()


def state_group(name: str, others: Iterable[str] = ()) -> str | None:
    """The group of a user's state name (``"first"``, ``"velocity"``, ``"second"``, ``"max"``, ...), or ``None``.

    ``others`` are the other state names of the same target: ``v`` beside ``m`` (and no ``s``)
    is the second moment (Adam's paper), else the velocity or first moment (the course).
    Plurals of a known name (``vs``, ``ms`` beside ``vs``) count as the name.
    """
    base = _base(name)
    bases = {_base(o) for o in others} - {base}
    plural = (
        base.endswith("s")
        and len(base) > 1
        and _known(base[:-1])
        and any(b.endswith("s") and _known(b[:-1]) and b[:-1] != base[:-1] for b in bases)
    )
    if plural or (not _known(base) and base.endswith("s") and _known(base[:-1])):
        base = base[:-1]
        bases = {b[:-1] if b.endswith("s") and _known(b[:-1]) else b for b in bases}
    if base == "v" and bases & STATE_GROUPS["first"][1] and not bases & {"s", "st", "s_t", "cache"}:
        return "second"
    for group, (_roles, names) in STATE_GROUPS.items():
        if base in names:
            return group
    return None


def _known(base: str) -> bool:
    return any(base in names for _roles, names in STATE_GROUPS.values())


def looks_like_state(name: str) -> bool:
    """Whether ``name`` is a usual name of some optimizer state (``v``, ``S``, ``cache``, ``moment2``, ``Eg2``...)."""
    if state_group(name) is not None:
        return True
    base = _base(name)
    return any(base in names for table in RULE_STATE_ALIASES.values() for names in table.values())


@dataclasses.dataclass(frozen=True)
class StateMap:
    """How a target's state names map to a rule's state keys; :func:`map_states` builds it.

    * ``keys``: user name -> rule key, for every name placed;
    * ``roles``: rule key -> role (:data:`optcheck.rules.ROLES`), for every key placed;
    * ``how``: user name -> how it was placed (``"given"``, ``"exact"``, ``"step"``, ``"alias"``,
      ``"role"``, ``"only-one"``);
    * ``unplaced``: the names it could not place, in the order given;
    * ``options``: the rule's array state keys with their roles (for messages);
    * ``rule``: the rule's name (``None`` without a rule);
    * ``absent``: state keys the rule keeps only with other hyperparameters (RMSprop's
      ``momentum_buffer`` with ``momentum > 0``), with their roles (for messages).
    """

    keys: Mapping[str, str]
    roles: Mapping[str, str]
    how: Mapping[str, str]
    unplaced: tuple[str, ...]
    options: Mapping[str, str]
    rule: str | None
    absent: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def message(self, name: str, fix: str | None = None) -> str:
        """One sentence naming ``name``, the rule's states and how to say which one it is."""
        fix = fix if fix is not None else f"pass roles={{{name!r}: ...}}"
        text = f"cannot tell which {self.rule} state {name!r} is; {fix} with one of {dict(self.options)}"
        if self.absent:
            keys = ", ".join(f"{k!r} ({r})" for k, r in self.absent.items())
            text += f" ({self.rule} keeps {keys} only with other hyperparameters)"
        return text

    def error(self, name: str | None = None, fix: str | None = None) -> UsageError:
        """The :class:`UsageError` for an unplaced name that the target changes (the first one by default)."""
        target = name if name is not None else self.unplaced[0]
        return UsageError(self.message(target, fix))

    def note(self, name: str) -> str:
        """The note for an unplaced name that the target never changes."""
        return (
            f"{name!r} is none of {self.rule}'s states and the target never changed it; it was ignored"
            if self.rule is not None
            else f"{name!r} was ignored"
        )


def _array_keys(rule: RuleLike) -> tuple[str, ...]:
    if isinstance(rule, Rule):
        return tuple(rule.array_keys())
    return tuple(k for k in rule.state_roles if k not in rule.scalar_states)


def role_or_key(rule: RuleLike | None, name: str, value: Any) -> tuple[str | None, str | None]:
    """Read ``roles[name] = value`` (a rule state key or a role) as ``(rule key, role)``.

    :class:`UsageError` naming the valid keys and roles otherwise.
    """
    if not isinstance(value, str):
        raise UsageError(
            f"roles[{name!r}] = {value!r} is invalid; expected a state name or a role (a string)"
        )
    valid_roles = sorted(ROLES)
    if rule is None:
        if value in ROLES:
            return None, value
        raise UsageError(f"roles[{name!r}] = {value!r} is not a role; expected one of {valid_roles}")
    cls = rule if isinstance(rule, type) else type(rule)
    keys = [*_array_keys(rule), *cls.scalar_states]
    roles = dict(cls.state_roles)
    if value in keys:
        return value, roles.get(value)
    if value in ROLES:
        matching = [k for k in keys if roles.get(k) == value]
        if len(matching) == 1:
            return matching[0], value
        if not matching:
            raise UsageError(
                f"roles[{name!r}] = {value!r}: {cls.name} has no state with that role; its states are "
                f"{ {k: roles.get(k, 'other') for k in keys} }"
            )
        raise UsageError(
            f"roles[{name!r}] = {value!r}: several {cls.name} states have that role ({matching}); name one"
        )
    raise UsageError(
        f"roles[{name!r}] = {value!r} is neither a {cls.name} state ({keys}) nor a role ({valid_roles})"
    )


def map_states(
    rule: RuleLike | None, names: Sequence[str], roles: Mapping[str, str] | None = None
) -> StateMap:
    """Map the user's state names to ``rule``'s state keys (see the module docstring for the order).

    ``rule`` may be a rule (its hyperparameters decide which keys exist: RMSprop has a
    ``momentum_buffer`` only with ``momentum > 0``), a rule class (every key it may have), or
    ``None`` (only ``roles`` place names; the rest keep their own name, unplaced).
    ``roles`` maps user names to a rule key or a role, as :class:`optcheck.Guard` takes them.
    """
    given = dict(roles or {})
    keys: dict[str, str] = {}
    role_of: dict[str, str] = {}
    how: dict[str, str] = {}
    names = list(dict.fromkeys(names))
    for name in names:
        if name in given:
            key, role = role_or_key(rule, name, given[name])
            keys[name] = key if key is not None else name
            if role is not None:
                role_of[keys[name]] = role
            how[name] = "given"
    if rule is None:
        placed = set(keys)
        return StateMap(
            keys=keys,
            roles=role_of,
            how=how,
            unplaced=tuple(n for n in names if n not in placed),
            options={},
            rule=None,
        )
    cls = rule if isinstance(rule, type) else type(rule)
    rule_roles = dict(cls.state_roles)
    array_keys = _array_keys(rule)
    scalar_keys = tuple(cls.scalar_states)
    free = [n for n in names if n not in keys]
    taken = set(keys.values())

    def place(name: str, key: str, kind: str) -> None:
        keys[name] = key
        how[name] = kind
        taken.add(key)
        free.remove(name)

    for name in list(free):  # the rule's own keys
        if name in (*array_keys, *scalar_keys) and name not in taken:
            place(name, name, "exact")
    for name in list(free):  # step counters
        if "step" in scalar_keys and "step" not in taken and is_step_name(name):
            place(name, "step", "step")
    per_rule = RULE_STATE_ALIASES.get(cls.name, {})
    for name in list(free):  # the rule's usual names
        hits = [
            k
            for k, aliases in per_rule.items()
            if _base(name) in aliases and k in array_keys and k not in taken
        ]
        if len(hits) == 1:
            place(name, hits[0], "alias")
    for name in list(free):  # the usual names of each role
        group = state_group(name, names)
        if group is None:
            continue
        for role in STATE_GROUPS[group][0]:
            hits = [k for k in array_keys if k not in taken and rule_roles.get(k) == role]
            if len(hits) == 1:
                place(name, hits[0], "role")
                break
            if hits:
                break  # several keys share the role: ambiguous
    open_keys = [k for k in array_keys if k not in taken]
    if len(free) == 1 and len(open_keys) == 1:
        name, key = free[0], open_keys[0]
        group = state_group(name, names)
        fits = group is None or rule_roles.get(key) in STATE_GROUPS[group][0]
        if fits:
            place(name, key, "only-one")
    for key in keys.values():
        if key in rule_roles:
            role_of.setdefault(key, rule_roles[key])
    return StateMap(
        keys=keys,
        roles=role_of,
        how=how,
        unplaced=tuple(free),
        options={k: rule_roles.get(k, "other") for k in array_keys},
        rule=cls.name,
        absent={k: r for k, r in rule_roles.items() if k not in array_keys and k not in scalar_keys and free},
    )
