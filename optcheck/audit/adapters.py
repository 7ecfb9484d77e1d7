"""Calling conventions ("styles") and binding the target's arguments by name.

Five styles, detected from the target's signature (``--style`` overrides):

* ``dict``: the course style, ``update_parameters_with_adam(parameters, grads, v, s, t,
  learning_rate, beta1, beta2, epsilon)``: dicts ``W1, b1, ...`` / ``dW1, db1, ...``, state
  dicts created by the caller, updated in place or returned after ``parameters``;
* ``config``: the cs231n style ``rmsprop(w, dw, config=None) -> (next_w, config)``;
* ``functional``: ``step(param, grad, state, **hyper) -> (param, state)``, ``state=None`` first;
* ``object``: a class constructed with the hyperparameters, ``opt.step(params, grads)``;
* ``torch``: a ``torch.optim.Optimizer`` subclass, stepped over real tensors.

:func:`bind` (parent side) maps every parameter of the target to a role and returns a
:class:`~optcheck.audit._common.Plan`; the sessions (child side, :func:`make_session`) call
the target the way a user's training loop would and return :class:`StepOutput` records.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._common import AuditUsageError, Call, ParamInfo, Plan, StepOutput, TargetInfo

__all__ = [
    "STYLES",
    "BadReturn",
    "Binding",
    "TargetExited",
    "TargetRaised",
    "bind",
    "describe",
    "detect_style",
    "make_session",
    "map_states",
    "probe_config",
    "resolve_hyper",
]

STYLES = ("dict", "config", "functional", "object", "torch")

# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

PARAMS_NAMES = (
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
    "W",
)
GRADS_NAMES = (
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
)
STATE_ARG_NAMES = ("state", "opt_state", "optimizer_state", "optim_state", "states")
STEP_NAMES = ("t", "step", "iteration", "iter", "timestep", "time_step", "iters", "n_iter", "step_count", "k")
REG_NAMES = (
    "reg_param",
    "lambd",
    "lambda_",
    "reg",
    "l2_reg",
    "reg_lambda",
    "lambda_reg",
    "l2_lambda",
    "reg_strength",
)
BATCH_NAMES = ("batch_size", "mini_batch_size", "minibatch_size", "m", "n_samples", "num_examples")

_FIRST_HINTS = (
    "v",
    "V",
    "velocity",
    "vel",
    "m",
    "M",
    "mom",
    "buf",
    "momentum_buffer",
    "exp_avg",
    "first_moment",
    "m_t",
    "mt",
    "moment1",
    "first",
)
_SECOND_HINTS = (
    "s",
    "S",
    "cache",
    "sq",
    "sq_avg",
    "square_avg",
    "exp_avg_sq",
    "sum",
    "accumulator",
    "acc",
    "G",
    "r",
    "h",
    "second_moment",
    "grad_squared",
    "v_t",
    "moment2",
    "eg2",
    "Eg2",
    "E_g2",
    "avg_sq",
    "second",
    "sq_grads",
    "squared",
)
_NORM_HINTS = ("u", "exp_inf", "inf_norm", "u_t", "ut", "norm")
_MAX_HINTS = (
    "vmax",
    "v_max",
    "max_v",
    "v_hat_max",
    "vhat",
    "v_hat",
    "max_exp_avg_sq",
    "s_max",
    "max_sq",
    "vmax_",
)
_DELTA_HINTS = (
    "delta",
    "u",
    "acc_delta",
    "d",
    "dx_acc",
    "accum_update",
    "Edx2",
    "E_dx2",
    "eu2",
    "acc_update",
)
_OTHER_HINTS = ("prev", "ax", "step_size", "step_sizes", "eta", "mu", "mu_product", "row", "col", "variance")
STATE_HINTS = _FIRST_HINTS + _SECOND_HINTS + _MAX_HINTS + _DELTA_HINTS + _NORM_HINTS

# name -> candidate rule hyperparameters, the first the rule has wins
HYPER_ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "step_size": ("lr",),
    "eta": ("lr",),
    "alpha": ("lr",),
    "lrate": ("lr",),
    "learningrate": ("lr",),
    "lr_": ("lr",),
    "epsilon": ("eps",),
    "eps": ("eps",),
    "epsilon_": ("eps",),
    "beta": ("alpha", "momentum", "rho", "beta1"),
    "decay_rate": ("alpha", "rho", "beta2", "decay_rate"),
    "decay": ("alpha", "rho"),
    "rho": ("alpha", "rho"),
    "gamma": ("alpha", "rho"),
    "momentum": ("momentum", "beta1"),
    "mu": ("momentum", "beta1"),
    "beta_1": ("beta1",),
    "b1": ("beta1",),
    "beta1": ("beta1",),
    "beta_2": ("beta2", "alpha", "rho"),
    "b2": ("beta2",),
    "beta2": ("beta2", "alpha", "rho"),
    "decay2": ("beta2",),
    "decay1": ("beta1",),
    "e": ("eps",),
    "mass": ("momentum",),
    "learning_rate_init": ("lr",),
    "stepsize": ("lr",),
    "lambd": ("weight_decay",),
    "reg_param": ("weight_decay",),
    "weight_decay": ("weight_decay",),
    "wd": ("weight_decay",),
    "l2": ("weight_decay",),
    "weight_decay_rate": ("weight_decay",),
    "decay_weight": ("weight_decay",),
    "lambda_wd": ("weight_decay",),
    "initial_accumulator": ("initial_accumulator_value",),
    "init_acc": ("initial_accumulator_value",),
    "initial_accumulator_value": ("initial_accumulator_value",),
}


#: The aliases an error message suggests first.
COMMON_ALIASES = (
    "learning_rate",
    "epsilon",
    "beta",
    "beta_1",
    "beta_2",
    "decay_rate",
    "rho",
    "momentum",
    "wd",
)


def resolve_hyper(name: str, hyper_names: Sequence[str]) -> str | None:
    """The rule hyperparameter that ``name`` means (exact name or a usual alias), or ``None``."""
    if name in hyper_names:
        return name
    for cand in HYPER_ALIASES.get(name, HYPER_ALIASES.get(name.lower(), ())):
        if cand in hyper_names:
            return cand
    return None


def aliases_for(hyper_names: Sequence[str]) -> dict[str, str]:
    """Every alias that resolves for a rule with ``hyper_names``: alias -> rule name."""
    out = {}
    for alias in HYPER_ALIASES:
        r = resolve_hyper(alias, hyper_names)
        if r is not None and alias != r:
            out[alias] = r
    return out


# ---------------------------------------------------------------------------------------------
# Describing the target (child side)
# ---------------------------------------------------------------------------------------------


def _literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, tuple):
        return all(_literal(v) for v in value)
    return False


def _params_of(fn: Any, skip_self: bool) -> tuple[ParamInfo, ...]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (ParamInfo("args", "VAR_POSITIONAL"), ParamInfo("kwargs", "VAR_KEYWORD"))
    out = []
    for i, p in enumerate(sig.parameters.values()):
        if skip_self and i == 0 and p.name in ("self", "cls"):
            continue
        has_default = p.default is not inspect.Parameter.empty
        ann = p.annotation
        ann_text = "" if ann is inspect.Parameter.empty else ann if isinstance(ann, str) else repr(ann)
        out.append(
            ParamInfo(
                name=p.name,
                kind=p.kind.name,
                has_default=has_default,
                default=p.default if has_default and _literal(p.default) else None,
                default_repr=repr(p.default) if has_default else "",
                annotation=ann_text[:200],
            )
        )
    return tuple(out)


def describe(obj: Any, spec_text: str = "") -> TargetInfo:
    """A picklable :class:`TargetInfo` for the target object (run in the child)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    module = getattr(obj, "__module__", "") or ""
    file = getattr(sys.modules.get(module), "__file__", None)
    method = ""
    owner = owner_class(obj)
    if owner is not None:
        method, obj = obj.__name__, owner
    if isinstance(obj, type):
        torch = sys.modules.get("torch")
        is_torch = bool(torch is not None and issubclass(obj, torch.optim.Optimizer))
        init = _params_of(_mro_dict(obj)["__init__"], skip_self=True) if "__init__" in _mro_dict(obj) else ()
        step = getattr(obj, "step", None)
        step_params = _params_of(step, skip_self=True) if callable(step) else None
        methods = tuple(
            (k, _params_of(v, skip_self=True))
            for k, v in _mro_dict(obj).items()
            if not k.startswith("_") and inspect.isfunction(v)
        )
        return TargetInfo(
            spec_text,
            name,
            "class",
            init,
            step_params,
            is_torch,
            file,
            module,
            methods=methods,
            method=method,
        )
    return TargetInfo(
        spec_text, name, "function", _params_of(obj, skip_self=False), None, False, file, module
    )


def owner_class(fn: Any) -> type | None:
    """The class whose method ``fn`` is, for a ``Class.method`` target (``None`` for anything else)."""
    if isinstance(fn, type) or not inspect.isfunction(fn):
        return None
    qual = getattr(fn, "__qualname__", "")
    if qual.count(".") != 1 or "<" in qual:
        return None
    owner = getattr(sys.modules.get(fn.__module__), qual.split(".")[0], None)
    if not isinstance(owner, type) or not isinstance(vars(owner).get(fn.__name__), type(fn)):
        return None
    params = list(inspect.signature(fn).parameters)
    return owner if params and params[0] == "self" else None


_OPTIMIZER_WORDS = (
    "adam",
    "sgd",
    "momentum",
    "rmsprop",
    "adagrad",
    "adadelta",
    "nesterov",
    "optim",
    "lion",
    "nadam",
)
_EXTRA_GRAD_NAMES = ("dvar", "dweights", "dparam", "grad_w", "grad_params", "gs", "dws", "layer")


def _grad_like(names: Sequence[str]) -> bool:
    for n in names:
        low = n.lower()
        if (
            n in GRADS_NAMES
            or low in GRADFN_NAMES
            or low in _EXTRA_GRAD_NAMES
            or low in ("grads", "gradients")
        ):
            return True
    return bool(_pairs(names))


def looks_like_update(obj: Any) -> bool:
    """Whether ``obj`` (a function or class found in a file) looks like an update rule or optimizer."""
    if isinstance(obj, type):
        torch = sys.modules.get("torch")
        if torch is not None and issubclass(obj, torch.optim.Optimizer):
            return True
        for name, member in vars(obj).items():
            if name.startswith("_") or not callable(member):
                continue
            if _grad_like([p.name for p in _params_of(member, skip_self=True)]):
                return True
        return False
    if not callable(obj):
        return False
    names = [p.name for p in _params_of(obj, skip_self=False) if not p.is_var]
    if _grad_like(names):
        return True
    qual = getattr(obj, "__name__", "").lower()
    return any(w in qual for w in _OPTIMIZER_WORDS) and all(
        p.has_default for p in _params_of(obj, skip_self=False) if not p.is_var
    )


def _mro_dict(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for base in reversed(cls.__mro__[:-1]):
        out.update(vars(base))
    return out


def detect_style(info: TargetInfo) -> str:
    """The calling convention of the target, from its kind and parameter names."""
    if info.kind == "class":
        return "torch" if info.is_torch_optimizer else "object"
    names = [p.name for p in info.params if not p.is_var]
    if "config" in names:
        return "config"
    if any(n in STATE_ARG_NAMES for n in names):
        return "functional"
    return "dict"  # the arguments' roles and containers are found by bind() and the first call


# ---------------------------------------------------------------------------------------------
# Binding by name (parent side)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Binding:
    """The result of :func:`bind`: the plan, the reference's hyperparameters and what was assumed.

    ``ref_hyper``: the rule's hyperparameters (rule names) the reference is built with;
    ``l2``: ``(reg_value, batch_value, weight_decay, reg_name, batch_name)`` when the course L2
    convention applies; ``notes``: one line per assumption, for the report; ``roles``: target
    argument -> what it was bound to (for the report's binding line); ``defaults_differ``:
    ``(config key, the target's default, the value used)`` for the config style.
    """

    plan: Plan
    ref_hyper: dict[str, Any]
    notes: list[str] = dataclasses.field(default_factory=list)
    roles: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    l2: tuple[float, float | None, float, str, str | None] | None = None
    defaults_differ: list[tuple[str, Any, Any]] = dataclasses.field(default_factory=list)
    bound: set[str] = dataclasses.field(default_factory=set)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


def _same_value(a: Any, b: Any) -> bool:
    """Whether two spellings of a hyperparameter give the same value (numbers within rounding)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return bool(a == b)


class _Binder:
    """Shared state of one binding: the rule's names, the user's values, what is used."""

    def __init__(
        self,
        info: TargetInfo,
        rule_cls: Any,
        hyper: Mapping[str, tuple[str, Any]],
        args: Mapping[str, Any],
        bind: Mapping[str, str] | None = None,
    ) -> None:
        self.info = info
        self.bind = dict(bind or {})
        self.rule_cls = rule_cls
        self.specs = {s.name: s for s in rule_cls.hyper_specs()}
        self.hyper_names = list(self.specs)
        self.hyper = dict(hyper)  # rule name -> (name the user wrote, value)
        self.args = dict(args)
        self.used_args: set[str] = set()
        self.ref_hyper: dict[str, Any] = {k: v for k, (_, v) in self.hyper.items()}
        self.notes: list[str] = []
        self.roles: list[tuple[str, str]] = []
        self.reg: tuple[str, Any] | None = None
        self.batch: tuple[str, Any] | None = None
        self.bound_hyper: set[str] = set()
        self.defaults_differ: list[tuple[str, Any, Any]] = []
        self.defaults_used: list[tuple[str, str, Any]] = []

    def resolve(self, name: str, names: Sequence[str] = ()) -> str | None:
        """The rule hyperparameter the target's argument ``name`` means, judged with the other ``names``.

        ``alpha`` is the learning rate unless another argument is (``learning_rate``, ``lr``, ...);
        then it is the rule's decay (RMSprop's ``alpha``).
        """
        if name.lower() == "alpha":
            others = [n for n in names if n != name and n.lower() in LR_NAMES]
            if not others:
                return "lr" if "lr" in self.hyper_names else None
            for cand in ("alpha", "rho", "beta2"):
                if cand in self.hyper_names:
                    return cand
            return None
        return resolve_hyper(name, self.hyper_names)

    def hyper_value(self, pname: str, rname: str, default: ParamInfo | None) -> Any:
        """The value of rule hyperparameter ``rname`` for the target argument ``pname``."""
        if rname in self.hyper:
            value = self.hyper[rname][1]
        elif default is not None and default.has_default and default.default is not None:
            value = default.default
            if rname in self.ref_hyper and self.ref_hyper[rname] != value:
                value = self.ref_hyper[rname]
            else:
                self.ref_hyper[rname] = value
                self.defaults_used.append((rname, pname, value))
        else:
            value = self.ref_hyper.get(rname, self.specs[rname].default)
            self.ref_hyper.setdefault(rname, value)
        self.bound_hyper.add(rname)
        return value

    def betas_value(self, p: ParamInfo) -> tuple[Any, Any]:
        """``betas=(beta1, beta2)`` from the user's values, the target's default or the rule's."""
        d = (
            p.default
            if p.has_default and isinstance(p.default, tuple) and len(p.default) == 2
            else (None, None)
        )
        out = []
        for rname, dv in zip(("beta1", "beta2"), d, strict=True):
            if rname in self.hyper:
                out.append(self.hyper[rname][1])
            elif dv is not None:
                self.ref_hyper.setdefault(rname, dv)
                out.append(self.ref_hyper[rname])
            else:
                out.append(self.ref_hyper.setdefault(rname, self.specs[rname].default))
            self.bound_hyper.add(rname)
        return out[0], out[1]

    def generic(self, p: ParamInfo, positional: bool = False, names: Sequence[str] = ()) -> Call | None:
        """Bind ``p`` as an ``--arg``, a hyperparameter or the course L2 arguments; ``None`` if none applies."""
        names = names or [q.name for q in self.info.params if not q.is_var]
        # a target's reg_param/lambd is the course L2 coefficient (divided by the batch size when given)
        rname = None if p.name in REG_NAMES or p.name in BATCH_NAMES else self.resolve(p.name, names)
        if p.name in self.args and rname is not None and p.name not in REG_NAMES:
            # a hyperparameter given with --arg: the target gets it, the reference uses it
            self.used_args.add(p.name)
            value = self.args[p.name]
            if rname in self.hyper and not _same_value(self.hyper[rname][1], value):
                raise AuditUsageError(
                    f"--arg {p.name}={value!r} and --hyper {self.hyper[rname][0]}={self.hyper[rname][1]!r} "
                    f"both set {rname} and disagree; give one"
                )
            self.ref_hyper[rname] = value
            self.bound_hyper.add(rname)
            self.roles.append((p.name, f"{rname}={_fmt(value)} (--arg)"))
            return Call(p.name, "hyper", value, positional=positional, source=rname)
        if p.name in self.args:
            self.used_args.add(p.name)
            value = self.args[p.name]
            if p.name in REG_NAMES and rname is None:
                self.reg = (p.name, value)
            elif p.name in BATCH_NAMES:
                self.batch = (p.name, value)
            self.roles.append((p.name, f"--arg {p.name}={_fmt(value)}"))
            return Call(p.name, "arg", value, positional=positional)
        if p.name == "betas" and "beta1" in self.specs and "beta2" in self.specs:
            value = self.betas_value(p)
            self.roles.append((p.name, f"(beta1, beta2)={value!r}"))
            return Call(p.name, "hyper", value, positional=positional, source="betas")
        if rname is not None:
            value = self.hyper_value(p.name, rname, p)
            self.roles.append((p.name, f"{rname}={_fmt(value)}" if rname != p.name else f"={_fmt(value)}"))
            return Call(p.name, "hyper", value, positional=positional, source=rname)
        if p.name in REG_NAMES and p.has_default and isinstance(p.default, (int, float)):
            self.reg = (p.name, p.default)
            return None
        if p.name in BATCH_NAMES and p.has_default and isinstance(p.default, (int, float)):
            self.batch = (p.name, p.default)
            return None
        return None

    def unbound(self, p: ParamInfo, where: str) -> AuditUsageError:
        """The usage error for an argument that cannot be bound."""
        return AuditUsageError(
            f"cannot bind argument {p.name!r} of {where}: it is not the parameters, the gradients, a state, "
            f"the step or a hyperparameter of {self.rule_cls.name}; give its value with --arg {p.name}=VALUE"
        )

    def finish(self, extra_kwargs: bool) -> None:
        """Check that every ``--arg`` was used."""
        unused = [a for a in self.args if a not in self.used_args]
        if unused and not extra_kwargs:
            names = [p.name for p in self.info.params if not p.is_var]
            raise AuditUsageError(
                f"--arg {unused[0]}: {self.info.name} has no argument {unused[0]!r} (it takes {names})"
            )


def _pick(params: list[ParamInfo], names: Sequence[str], used: set[str]) -> ParamInfo | None:
    for p in params:
        if p.name in names and p.name not in used and not p.is_var:
            return p
    return None


def _first_free(params: list[ParamInfo], used: set[str]) -> ParamInfo | None:
    for p in params:
        if p.name not in used and not p.is_var:
            return p
    return None


def bind(
    info: TargetInfo,
    style: str,
    rule_cls: Any,
    hyper: Mapping[str, tuple[str, Any]],
    args: Mapping[str, Any],
    config_defaults: Mapping[str, Any] | None = None,
    bind_roles: Mapping[str, str] | None = None,
) -> Binding:
    """Map every argument of the target to a role for ``style``; raise ``AuditUsageError`` when one cannot be.

    ``hyper`` maps rule hyperparameter names to ``(the name the user wrote, value)``; ``args``
    holds the ``--arg`` values; ``config_defaults`` is what the config style's ``config=None``
    call set up (scalars and arrays); ``bind_roles`` the ``--bind NAME=ROLE`` settings.
    """
    b = _Binder(info, rule_cls, hyper, args, check_bind_roles(info, rule_cls, bind_roles or {}))
    if style in ("dict", "functional", "config"):
        plan = _bind_function(b, style, config_defaults)
    elif style == "object":
        plan = _bind_object(b)
    elif style == "torch":
        plan = _bind_torch(b)
    else:  # pragma: no cover - checked by the engine
        raise AuditUsageError(f"--style {style!r} is invalid; expected auto or one of {list(STYLES)}")
    if b.defaults_used:
        used = ", ".join(
            f"{rname}={_fmt(value)}" + (f" ({pname})" if pname != rname else "")
            for rname, pname, value in b.defaults_used
        )
        b.notes.insert(
            0, f"from the target's own defaults: {used}; give --hyper NAME=VALUE to audit other values"
        )
    out = Binding(plan, b.ref_hyper, b.notes, b.roles, defaults_differ=b.defaults_differ, bound=b.bound_hyper)
    _course_l2(b, out)
    unbound_user = [b.hyper[r][0] for r in b.hyper if r not in b.bound_hyper and r not in plan.kwargs_hyper]
    if plan.style == "config":
        unbound_user = []
    for name in unbound_user:
        out.notes.append(
            f"{name}: {info.name} takes no argument for it; the reference uses {name}="
            f"{_fmt(b.ref_hyper[resolve_hyper(name, b.hyper_names) or name])} and the target must do the same"
        )
    return out


def _course_l2(b: _Binder, out: Binding) -> None:
    if b.reg is None:
        return
    reg_name, reg = b.reg
    if not isinstance(reg, (int, float)) or isinstance(reg, bool):
        raise AuditUsageError(f"--arg {reg_name}={reg!r} is invalid; expected a number (the L2 coefficient)")
    batch_name, batch = b.batch if b.batch is not None else (None, None)
    if batch is not None and (not isinstance(batch, (int, float)) or isinstance(batch, bool) or batch <= 0):
        raise AuditUsageError(
            f"--arg {batch_name}={batch!r} is invalid; expected a positive number (the batch size)"
        )
    wd = float(reg) / float(batch) if batch else float(reg)
    if reg == 0:
        return
    if "weight_decay" not in b.specs:
        raise AuditUsageError(
            f"{reg_name}={reg!r}: {b.rule_cls.name} has no weight decay, so the course L2 term cannot be "
            f"checked; audit with --arg {reg_name}=0"
        )
    if "weight_decay" in b.hyper and not _same_value(b.hyper["weight_decay"][1], wd):
        given = b.hyper["weight_decay"][0]
        raise AuditUsageError(
            f"--hyper {given}={b.hyper['weight_decay'][1]!r} and {reg_name}"
            + (f"/{batch_name} = {_fmt(float(reg))}/{_fmt(batch)}" if batch else f"={_fmt(float(reg))}")
            + f" = {wd:.6g} both set the L2 coefficient and disagree; give one, or values that agree"
        )
    b.ref_hyper["weight_decay"] = wd
    out.ref_hyper["weight_decay"] = wd
    formula = (
        f"{reg_name}/{batch_name} = {_fmt(float(reg))}/{_fmt(batch)}"
        if batch
        else f"{reg_name} = {_fmt(float(reg))}"
    )
    out.l2 = (float(reg), float(batch) if batch else None, wd, reg_name, batch_name)
    out.notes.append(
        f"course L2: {formula} = {wd:.6g} times W added to the gradient of the weights W1, W2, ... "
        f"(not the biases): reference weight_decay={wd:.6g} on the weights only"
    )


# ---------------------------------------------------------------------------------------------
# Roles of a function's arguments, by meaning
# ---------------------------------------------------------------------------------------------

#: Names of an argument that is a function returning the gradient (``update(w, grad_func)``).
GRADFN_NAMES = (
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
#: Names of the number of iterations of a loop driver (``adam(grad, x0, num_iters=100)``).
LOOP_NAMES = (
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
CALLBACK_NAMES = ("callback", "cb", "callback_fn", "callback_func", "hook", "log_fn")
#: Parameter names that usually hold several arrays (a dict or a list) rather than one array.
PLURAL_PARAMS = (
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
#: Roles ``--bind NAME=ROLE`` accepts (besides a hyperparameter name of the rule).
BIND_ROLES = ("params", "grads", "state", "step", "grad_fn", "callback", "iters", "ignore")


def _looks_like_state(name: str, rule_keys: Sequence[str] = ()) -> bool:
    """Whether ``name`` is a usual name of an optimizer state (``v``, ``S``, ``cache``, ``ms``, ``v_dw``)."""
    low = name.lower()
    hints = {h.lower() for h in STATE_HINTS} | {
        "accum",
        "accumulators",
        "velocity",
        "velocities",
        "buffers",
        "bufs",
        "moments",
        "caches",
        "momentum_buffers",
        "sq_avgs",
        "square_avgs",
        "exp_avgs",
        "exp_avg_sqs",
        "m_t",
        "v_t",
    }
    if low in hints or name in rule_keys:
        return True
    if low.endswith("s") and low[:-1] in hints:
        return True
    head = low.split("_")[0]
    return "_" in low and head in hints and head not in ("d", "grad")


def _hyper_context(names: Sequence[str]) -> set[str]:
    """The meanings the signature's names give each other (``alpha`` beside ``learning_rate`` is a decay)."""
    out = set()
    for n in names:
        if n.lower() in LR_NAMES:
            out.add("lr")
    return out


#: Names that mean the learning rate in every rule (``alpha`` only when no other name does).
LR_NAMES = (
    "lr",
    "learning_rate",
    "learning_rate_init",
    "step_size",
    "stepsize",
    "eta",
    "lrate",
    "learningrate",
    "lr_",
)


def _role_by_name(p: ParamInfo, names: Sequence[str], b: _Binder, loop: bool) -> str | None:
    """The role the name (and annotation) of ``p`` says it has, or ``None``."""
    n = p.name
    low = n.lower()
    ann = (p.annotation or "").lower()
    if "callable" in ann or low in GRADFN_NAMES or (loop and low in ("grad", "gradient", "g", "grads")):
        return "grad_fn"
    if low in CALLBACK_NAMES:
        return "callback"
    if loop and low in LOOP_NAMES:
        return "iters"
    if n in PARAMS_NAMES or low in ("var", "variable", "data", "x0", "w0", "theta0", "params0", "args", "ws"):
        return "params"
    if n in GRADS_NAMES or low in ("dvar", "dweights", "dparam", "grad_w", "grad_params", "gs", "dws"):
        return "grads"
    if n in STATE_ARG_NAMES:
        return "ostate"
    if (
        n in STEP_NAMES
        and b.resolve(n, names) is None
        and not (p.has_default and p.default is not None and not isinstance(p.default, int))
    ):
        return "step"
    if n == "betas" or b.resolve(n, names) is not None:
        return "hyper"
    numeric_default = isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
    if (n in REG_NAMES or n in BATCH_NAMES) and (numeric_default or not _looks_like_state(n)):
        return "l2"  # ``m`` is the batch size beside ``reg_param`` but the first moment beside ``s``
    if (not p.has_default or p.default is None) and _looks_like_state(n, _rule_state_keys(b)):
        return "state"
    return None


def _pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """``(param, grad)`` argument pairs named by a gradient-key convention (``w``/``dw``, ``b``/``db``)."""
    from .._core.names import grad_key_candidates

    out = []
    for n in names:
        for cand in grad_key_candidates(n)[1:]:
            if cand in names:
                out.append((n, cand))
                break
    return out


def function_roles(info: TargetInfo, b: _Binder, params: Sequence[ParamInfo]) -> dict[str, str]:
    """Every argument's role: from ``--bind``, ``--arg``, the names and annotations; refuse when unsure.

    Raises ``AuditUsageError`` with one line naming the arguments that could not be told apart
    and the ``--bind NAME=ROLE`` that settles it.
    """
    names = [p.name for p in params if not p.is_var]
    roles: dict[str, str] = {}
    loop = any(n.lower() in LOOP_NAMES for n in names) or any(n.lower() in CALLBACK_NAMES for n in names)
    pairs = _pairs(names)
    for p in params:
        if p.is_var:
            continue
        if p.name in b.bind:
            roles[p.name] = b.bind[p.name]
            continue
        if p.name in b.args and b.resolve(p.name, names) is None and p.name not in REG_NAMES + BATCH_NAMES:
            roles[p.name] = "arg"
            continue
        role = _role_by_name(p, names, b, loop)
        if role is not None:
            roles[p.name] = role
    if len(pairs) >= 2 and not any(r == "params" and n not in dict(pairs) for n, r in roles.items()):
        for pn, gn in pairs:
            if pn not in b.bind:
                roles[pn] = "params"
            if gn not in b.bind:
                roles[gn] = "grads"
    elif len(pairs) == 1:
        pn, gn = pairs[0]
        if roles.get(pn) in (None, "params") and roles.get(gn) in (None, "grads"):
            roles[pn], roles[gn] = "params", "grads"
    where = info.signature_text()
    unknown = [p for p in params if not p.is_var and p.name not in roles and not p.has_default]
    n_params = [n for n, r in roles.items() if r == "params"]
    n_grads = [n for n, r in roles.items() if r in ("grads", "grad_fn")]
    if len(n_params) > 1 and len(pairs) < 2:
        raise AuditUsageError(
            f"cannot tell which argument of {where} holds the parameters: {n_params} all could; pass "
            f"--bind {n_params[0]}=params --bind {n_params[1]}=ROLE (ROLE: one of {list(BIND_ROLES)})"
        )
    if len(n_grads) > 1 and len(pairs) < 2:
        raise AuditUsageError(
            f"cannot tell which argument of {where} holds the gradients: {n_grads} all could; pass "
            f"--bind {n_grads[0]}=grads --bind {n_grads[1]}=ROLE (ROLE: one of {list(BIND_ROLES)})"
        )
    if not n_grads and not n_params and not unknown and looks_like_factory(info):
        return {**roles, "": "factory"}
    if not n_grads:
        cands = [p.name for p in unknown] or [p.name for p in params if not p.is_var and p.name not in roles]
        hint = f"; pass --bind {cands[0]}=grads" if cands else ""
        raise AuditUsageError(
            f"cannot bind {where}: no argument is named like the gradients (grads, grad, dw, g, ...){hint}"
            + (f" (candidates: {cands})" if len(cands) > 1 else "")
        )
    if unknown:
        u = unknown[0]
        raise AuditUsageError(
            f"cannot bind argument {u.name!r} of {where}: its name says neither parameters, gradients, a "
            f"state, the step nor a hyperparameter of {b.rule_cls.name}; pass --bind {u.name}=ROLE (ROLE: one "
            f"of {list(BIND_ROLES)} or a hyperparameter such as lr) or its value with --arg {u.name}=VALUE"
        )
    return roles


def _containers_for(name: str, is_args: bool) -> tuple[str, ...]:
    """The containers to try for an argument called ``name`` (what its name suggests first)."""
    if is_args:
        return ("args",)
    if name in PLURAL_PARAMS or name.lower() in PLURAL_PARAMS:
        return ("dict", "list", "array")
    return ("array", "vector", "dict", "list")


def _bind_function(b: _Binder, style: str, config_defaults: Mapping[str, Any] | None) -> Plan:
    info = b.info
    params = list(info.params)
    names = [p.name for p in params if not p.is_var]
    plan = Plan(style=style)
    where = info.signature_text()
    roles = function_roles(info, b, params)
    if roles.pop("", None) == "factory":
        return _bind_factory(b, plan, params)
    calls: list[Call] = []
    has_kwargs = any(p.kind == "VAR_KEYWORD" for p in params)
    multi = sum(1 for r in roles.values() if r == "params") > 1
    pairs = dict(_pairs(names)) if multi else {}
    p_names = [n for n in names if roles.get(n) == "params"]
    g_names = [n for n in names if roles.get(n) in ("grads", "grad_fn")]
    if multi:
        plan.container = "args"
        plan.arg_keys = {**{pn: pn for pn in pairs}, **{gn: pn for pn, gn in pairs.items()}}
        plan.param_names, plan.grad_names = ", ".join(p_names), ", ".join(g_names)
    else:
        plan.param_names = p_names[0] if p_names else "params"
        plan.grad_names = g_names[0]
    if not p_names:
        if style == "config":
            raise AuditUsageError(
                f"{where} takes no argument for the parameters; expected {style_example(style)}"
            )
        plan.direction = 0  # decided at the first call: p + step or p - step
    lead = p_names[0] if p_names else g_names[0]
    plan.containers = _containers_for(lead, multi) if style not in ("config",) else ("array",)
    plan.container = plan.containers[0]
    for p in params:
        if p.is_var:
            continue
        role = roles.get(p.name)
        pos = p.positional_only or (style == "config" and role in ("params", "grads"))
        if role == "params":
            calls.append(Call(p.name, "params", positional=pos, state=plan.arg_keys.get(p.name, "")))
            b.roles.append((p.name, "the parameters"))
        elif role == "grads":
            calls.append(Call(p.name, "grads", positional=pos, state=plan.arg_keys.get(p.name, "")))
            b.roles.append((p.name, "the gradients"))
        elif role == "grad_fn":
            calls.append(Call(p.name, "grad_fn", positional=pos))
            b.roles.append((p.name, "a function returning the gradient"))
        elif role == "callback":
            calls.append(Call(p.name, "callback", positional=pos))
        elif role == "iters":
            calls.append(Call(p.name, "iters", positional=pos))
        elif style == "config" and p.name == "config":
            calls.append(Call(p.name, "config", positional=p.positional_only))
            b.roles.append((p.name, "the config dict"))
        elif role == "ostate" or (role == "state" and style == "functional" and p.name in STATE_ARG_NAMES):
            calls.append(Call(p.name, "ostate", state=p.name, positional=p.positional_only))
            plan.state_names.append(p.name)
            b.roles.append((p.name, "the optimizer state (None on the first call)"))
        elif role == "step":
            calls.append(Call(p.name, "step", positional=p.positional_only))
            b.roles.append((p.name, "the step number 1, 2, 3, ..."))
        elif role == "state":
            calls.append(Call(p.name, "state", state=p.name, positional=p.positional_only))
            plan.state_names.append(p.name)
        elif role == "ignore":
            if not p.has_default:
                calls.append(Call(p.name, "arg", None, positional=p.positional_only))
        elif role is not None and role not in ("arg", "hyper", "l2") and role in b.specs:
            value = b.hyper_value(p.name, role, p)
            calls.append(Call(p.name, "hyper", value, positional=p.positional_only, source=role))
            b.roles.append((p.name, f"{role}={_fmt(value)}"))
        else:
            c = b.generic(p, p.positional_only, names)
            if c is not None:
                calls.append(c)
            elif not p.has_default:
                raise b.unbound(p, where)
    if style == "config":
        _bind_config(b, plan, config_defaults or {})
    if has_kwargs and style in ("functional", "dict"):
        for rname, (given, value) in b.hyper.items():
            if rname not in b.bound_hyper:
                plan.kwargs_hyper[given] = value
                b.bound_hyper.add(rname)
        for a, v in b.args.items():
            if a not in b.used_args:
                b.used_args.add(a)
                plan.kwargs_hyper[a] = v
    b.finish(has_kwargs)
    # positional calls first, in signature order (they are a prefix of the signature)
    calls.sort(key=lambda c: not c.positional)
    plan.calls = calls
    if any(c.role == "ostate" for c in calls) and style == "dict":
        plan.style = "functional"
    for s in plan.state_names:
        if any(c.role == "state" and c.state == s for c in calls):
            b.roles.append((s, "a state (zeros shaped like the parameters)"))
    if any(c.role == "iters" for c in calls) and any(c.role == "grad_fn" for c in calls):
        plan.style = "loop"
    return plan


def looks_like_factory(info: TargetInfo) -> bool:
    """Whether a function taking only hyperparameters is an optimizer factory (``adam(step_size)``)."""
    name = info.name.lower()
    return any(w in name for w in _OPTIMIZER_WORDS)


def _bind_factory(b: _Binder, plan: Plan, params: Sequence[ParamInfo]) -> Plan:
    """A factory of ``(init, update, get_params)``: its arguments are hyperparameters."""
    plan.style = "triple"
    plan.containers = ("array", "dict")
    plan.container = "array"
    plan.param_names, plan.grad_names = "x0", "g"
    plan.grad_prefix = plan.state_prefix = ""
    names = [p.name for p in params if not p.is_var]
    for p in params:
        if p.is_var:
            continue
        c = b.generic(p, p.positional_only, names)
        if c is not None:
            plan.calls.append(c)
        elif not p.has_default:
            raise b.unbound(p, b.info.signature_text())
    b.finish(any(p.kind == "VAR_KEYWORD" for p in params))
    return plan


def passed_hyper(plan: Plan, info: TargetInfo, rule_cls: Any) -> dict[str, Any]:
    """The hyperparameters of ``rule_cls`` the target is given by ``plan`` (rule name -> value).

    The same call means different rules' hyperparameters (``beta`` is RMSprop's ``alpha`` and
    SGD's ``momentum``), so each argument given a value is read again under ``rule_cls``.
    """
    b = _Binder(info, rule_cls, {}, {})
    names = [p.name for p in info.params if not p.is_var]
    out: dict[str, Any] = {}
    for c in [*plan.calls, *plan.step_calls]:
        if c.role not in ("hyper", "arg"):
            continue
        if c.name == "betas" and isinstance(c.value, tuple) and "beta1" in b.specs:
            out["beta1"], out["beta2"] = c.value
            continue
        rname = c.source if c.source in b.specs and c.role == "hyper" and c.source == c.name else None
        rname = rname or b.resolve(c.name, names)
        if rname is not None and rname in b.specs:
            out[rname] = c.value
    for key, value in {**plan.given, **plan.config}.items():
        rname = b.resolve(key, list({**plan.given, **plan.config}))
        if rname is not None:
            out[rname] = value
    return out


def check_bind_roles(info: TargetInfo, rule_cls: Any, bind_roles: Mapping[str, str]) -> dict[str, str]:
    """Validate ``--bind NAME=ROLE``: NAME an argument of the target, ROLE a role or a hyperparameter."""
    names = [p.name for p in info.params if not p.is_var] + [p.name for p in (info.step_params or ())]
    specs = [s.name for s in rule_cls.hyper_specs()]
    out = {}
    for name, role in bind_roles.items():
        if name not in names:
            raise AuditUsageError(
                f"--bind {name}={role}: {info.name} has no argument {name!r} (it takes {names})"
            )
        r = role.strip()
        if r not in BIND_ROLES and r not in specs:
            alias = resolve_hyper(r, specs)
            if alias is None:
                raise AuditUsageError(
                    f"--bind {name}={role}: {role!r} is not a role; expected one of {list(BIND_ROLES)} or a "
                    f"hyperparameter of {rule_cls.name} ({specs})"
                )
            r = alias
        out[name] = r
    return out


def _rule_state_keys(b: _Binder) -> tuple[str, ...]:
    keys: list[str] = []
    for k in getattr(b.rule_cls, "state_roles", {}):
        if k != "step":
            keys.append(k)
    return tuple(keys) + tuple(getattr(b.rule_cls, "array_states", ()))


def _bind_config(b: _Binder, plan: Plan, defaults: Mapping[str, Any]) -> None:
    for key, value in defaults.items():
        if isinstance(value, np.ndarray) or (hasattr(value, "shape") and getattr(value, "shape", ()) != ()):
            plan.state_names.append(key)
            continue
        if key in STEP_NAMES and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        rname = resolve_hyper(key, b.hyper_names)
        if rname is None:
            if key in b.args:
                plan.config[key] = b.args[key]
                b.used_args.add(key)
            else:
                b.notes.append(
                    f"config[{key!r}]={value!r} is not a hyperparameter of {b.rule_cls.name}; left as it is"
                )
            continue
        plan.given[key] = b.hyper[rname][1] if rname in b.hyper else value
        if rname in b.hyper:
            used = b.hyper[rname][1]
            plan.config[key] = used
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and not math.isclose(float(value), float(used), rel_tol=1e-12)
            ):
                b.defaults_differ.append((key, value, used))
        else:
            b.ref_hyper[rname] = value
            b.notes.append(f"{rname}={_fmt(value)}: the default the target sets for config[{key!r}]")
        b.bound_hyper.add(rname)
        b.roles.append((f"config[{key!r}]", f"{rname}={_fmt(b.ref_hyper[rname])}"))
    for rname, (given, value) in b.hyper.items():
        if rname not in b.bound_hyper:
            plan.config[given] = value
            b.bound_hyper.add(rname)
            b.notes.append(
                f"{given}: not among the config's own keys {list(defaults)}; passed as config[{given!r}]"
            )
    for a, v in b.args.items():
        if a not in b.used_args and a not in [p.name for p in b.info.params]:
            plan.config[a] = v
            b.used_args.add(a)


def style_example(style: str) -> str:
    """The signature the style expects, for messages."""
    return {
        "dict": "update_parameters(parameters, grads, v, s, t, learning_rate, beta1, beta2, epsilon)",
        "config": "rule(w, dw, config=None) -> (next_w, config)",
        "functional": "step(param, grad, state, **hyper) -> (param, state)",
        "object": "class Opt: __init__(self, lr, ...); step(self, params, grads)",
        "torch": "class Opt(torch.optim.Optimizer): __init__(self, params, lr, ...); step(self)",
    }[style]


def _bind_object(b: _Binder) -> Plan:
    info = b.info
    plan = Plan(style="object")
    where = f"{info.name}.__init__"
    has_kwargs = False
    for p in info.params:
        if p.kind == "VAR_KEYWORD":
            has_kwargs = True
            continue
        if p.is_var:
            continue
        if p.name in b.args:
            c = b.generic(p)
            assert c is not None
            plan.calls.append(c)
            continue
        if (
            p.name in PLURAL_PARAMS[:8] or p.name in ("param_groups", "model_params")
        ) and not plan.ctor_params:
            plan.ctor_params = p.name
            plan.calls.append(Call(p.name, "params", positional=p.positional_only))
            b.roles.append((p.name, "the parameters dict"))
            continue
        c = b.generic(p, p.positional_only)
        if c is not None:
            plan.calls.append(c)
            continue
        if p.has_default:
            continue
        raise b.unbound(p, where)
    method, mparams = _choose_method(info)
    plan.method = method
    where_m = f"{info.name}.{method}"
    mnames = [p.name for p in mparams if not p.is_var]
    sub = _Binder(
        dataclasses.replace(info, name=where_m, params=mparams), b.rule_cls, b.hyper, b.args, b.bind
    )
    sub.ref_hyper = b.ref_hyper
    sub.used_args = b.used_args
    sub.bound_hyper = b.bound_hyper
    roles: dict[str, str] = {}
    for p in mparams:
        if p.is_var:
            continue
        if p.name in b.bind:
            roles[p.name] = b.bind[p.name]
        elif p.name.lower() in LAYER_NAMES and len([q for q in mparams if not q.has_default]) == 1:
            roles[p.name] = "layer"
        elif p.name.lower() in KEY_NAMES:
            roles[p.name] = "key"
    if "layer" not in roles.values():
        rest = [p for p in mparams if p.name not in roles]
        found = function_roles(sub.info, sub, rest) if rest else {}
        roles.update(found)
    multi = sum(1 for r in roles.values() if r == "params") > 1
    p_names = [n for n in mnames if roles.get(n) == "params"]
    g_names = [n for n in mnames if roles.get(n) in ("grads", "grad_fn")]
    if "layer" in roles.values():
        plan.container = "attrs"
        plan.containers = ("attrs",)
        plan.param_names = plan.grad_names = next(n for n, r in roles.items() if r == "layer")
    elif multi:
        pairs = dict(_pairs(mnames))
        plan.container = "args"
        plan.containers = ("args",)
        plan.arg_keys = {**{pn: pn for pn in pairs}, **{gn: pn for pn, gn in pairs.items()}}
        plan.param_names, plan.grad_names = ", ".join(p_names), ", ".join(g_names)
    else:
        lead = p_names[0] if p_names else plan.ctor_params or g_names[0]
        plan.containers = ("dict",) if "key" in roles.values() else _containers_for(lead, False)
        plan.container = plan.containers[0]
        plan.param_names = p_names[0] if p_names else (plan.ctor_params or "params")
        plan.grad_names = g_names[0] if g_names else "grads"
        if "key" in roles.values():
            plan.per_key = next(n for n, r in roles.items() if r == "key")
    if plan.ctor_params and not plan.per_key:
        plan.containers = tuple(c for c in plan.containers if c != "array") or ("dict",)
        plan.container = plan.containers[0]
    for p in mparams:
        if p.is_var:
            continue
        role = roles.get(p.name)
        if role in ("params", "grads"):
            plan.step_calls.append(
                Call(p.name, role, positional=p.positional_only, state=plan.arg_keys.get(p.name, ""))
            )
        elif role in ("grad_fn", "step", "layer", "key", "callback"):
            plan.step_calls.append(Call(p.name, role, positional=p.positional_only))
        elif role == "arg" or p.name in b.args:
            b.used_args.add(p.name)
            plan.step_calls.append(Call(p.name, "arg", b.args.get(p.name), positional=p.positional_only))
        elif role == "ignore":
            continue
        else:
            c = sub.generic(p, p.positional_only, mnames)
            if c is not None:
                plan.step_calls.append(c)
            elif not p.has_default:
                raise sub.unbound(p, where_m)
    b.roles.extend(sub.roles)
    if method != "step":
        zero_arg = dict(info.methods).get("step")
        if zero_arg is not None and not [p for p in zero_arg if not p.has_default and not p.is_var]:
            plan.after = "step"
    plan.step_calls.sort(key=lambda c: not c.positional)
    plan.grad_prefix = ""
    plan.state_prefix = ""
    b.finish(has_kwargs)
    if has_kwargs:
        for rname, (given, value) in b.hyper.items():
            if rname not in b.bound_hyper:
                plan.kwargs_hyper[given] = value
                b.bound_hyper.add(rname)
    return plan


#: Names of the argument of ``update(layer)`` (an object with ``W``/``dW`` attributes).
LAYER_NAMES = ("layer", "l", "module", "lyr")
#: Names of the argument of ``update(param, grad, name)`` (the array's key).
KEY_NAMES = ("name", "key", "param_name", "layer_name", "pname", "param_key", "param_id", "idx")
#: Update methods of optimizer objects, in the order they are looked for.
METHOD_NAMES = (
    "step",
    "update",
    "update_params",
    "update_parameters",
    "apply_grad",
    "apply_grads",
    "apply_gradients",
    "apply",
    "update_weights",
    "optimize",
    "minimize",
)


def _choose_method(info: TargetInfo) -> tuple[str, tuple[ParamInfo, ...]]:
    """The update method of an optimizer class: the one a ``Class.method`` target names, else by name."""
    methods = dict(info.methods)
    if info.method:
        return info.method, methods.get(info.method, ())
    if not methods and info.step_params is not None:
        return "step", info.step_params
    for name in METHOD_NAMES:
        params = methods.get(name)
        if params is None:
            continue
        names = [p.name for p in params if not p.is_var]
        if _grad_like(names) or any(n.lower() in LAYER_NAMES for n in names):
            return name, params
    cands = [n for n, ps in methods.items() if _grad_like([p.name for p in ps])]
    if len(cands) == 1:
        return cands[0], methods[cands[0]]
    if cands:
        raise AuditUsageError(
            f"{info.name} has several update methods {cands}; name one as TARGET {info.spec}.{cands[0]}"
            if ":" in info.spec
            else f"{info.name} has several update methods {cands}; name one as {info.spec}:{info.name}.{cands[0]}"
        )
    raise AuditUsageError(
        f"{info.name} has no method that takes gradients (methods: {sorted(methods)}); expected e.g. "
        "step(params, grads) or update(w, grad)"
    )


def _bind_torch(b: _Binder) -> Plan:
    info = b.info
    plan = Plan(style="torch", grad_prefix="", state_prefix="", param_names="params", grad_names=".grad")
    params = [p for p in info.params]
    first = True
    has_kwargs = False
    for p in params:
        if p.kind == "VAR_KEYWORD":
            has_kwargs = True
            continue
        if p.is_var:
            continue
        if first:
            first = False
            plan.ctor_params = p.name
            plan.calls.append(Call(p.name, "params", positional=True))
            continue
        c = b.generic(p)
        if c is not None:
            plan.calls.append(c)
            continue
        if p.has_default:
            continue
        raise b.unbound(p, f"{info.name}.__init__")
    b.finish(has_kwargs)
    if has_kwargs:
        for rname, (_given, value) in b.hyper.items():
            if rname not in b.bound_hyper:
                plan.kwargs_hyper[rname] = value
                b.bound_hyper.add(rname)
    skipped = [b.hyper[r][0] for r in b.hyper if r not in b.bound_hyper]
    for name in skipped:
        b.bound_hyper.add(resolve_hyper(name, b.hyper_names) or name)
        b.notes.append(
            f"{name}: {info.name}'s constructor does not accept it; not passed (the reference uses it)"
        )
    return plan


# ---------------------------------------------------------------------------------------------
# Mapping the target's state names to the rule's
# ---------------------------------------------------------------------------------------------

_ROLE_GROUP = {
    "first-moment": "first",
    "momentum": "first",
    "second-moment": "second",
    "accumulator": "second",
    "max-second-moment": "max",
    "norm": "norm",
}


def _hint_group(name: str, all_names: Sequence[str], roles_present: Sequence[str] = ()) -> str | None:
    base = name.split("'")[1] if "'" in name else name
    if base in _MAX_HINTS:
        return "max"
    if base in _NORM_HINTS and "norm" in roles_present:
        return "norm"
    if base in ("v", "V") and any(n in ("m", "M") for n in all_names):
        return "second"
    if base in _FIRST_HINTS:
        return "first"
    if base in _SECOND_HINTS:
        return "second"
    if base in _DELTA_HINTS:
        return "delta"
    return None


def map_states(user_names: Sequence[str], rule: Any) -> dict[str, str]:
    """Map the target's state names to the rule's array state keys (``{"S": "square_avg"}``).

    Exact torch names first, then a single state on each side, then the usual names of each
    role (``v``/``m``/``velocity``: first moment; ``s``/``cache``/``v`` after ``m``: second
    moment; ``vmax``: the AMSGrad maximum), then the order of the arguments.
    """
    keys = list(rule.array_keys())
    roles = dict(getattr(type(rule), "state_roles", {}))
    out: dict[str, str] = {}
    free_user = [n for n in user_names]
    free_keys = list(keys)
    for n in list(free_user):
        if n in free_keys:
            out[n] = n
            free_user.remove(n)
            free_keys.remove(n)
    if len(free_user) == 1 and len(free_keys) == 1:
        out[free_user[0]] = free_keys[0]
        return out
    for n in list(free_user):
        group = _hint_group(n, user_names, [_ROLE_GROUP.get(r, "") for r in roles.values()])
        if group is None:
            continue
        cands = [
            k
            for k in free_keys
            if _ROLE_GROUP.get(roles.get(k, ""), "delta" if "delta" in k else None) == group
        ]
        if len(cands) >= 1:
            out[n] = cands[0]
            free_user.remove(n)
            free_keys.remove(cands[0])
    if len(free_user) == len(free_keys):
        for n, k in zip(free_user, free_keys, strict=True):
            out[n] = k
    return out


# ---------------------------------------------------------------------------------------------
# Calling the target (child side)
# ---------------------------------------------------------------------------------------------


class TargetRaised(Exception):
    """The target raised ``type_name: message``; ``key`` is the key of a ``KeyError``."""

    def __init__(self, type_name: str, message: str, tb: str, key: Any = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.tb = tb
        self.key = key


class TargetExited(Exception):
    """The target called ``sys.exit(code)``."""

    def __init__(self, code: Any) -> None:
        super().__init__(f"sys.exit({code!r})")
        self.code = code


class BadReturn(Exception):
    """The target returned something the adapter cannot read (a wrong type or structure)."""


_OUR_FILES = (__file__.rsplit(".", 1)[0],)


def _user_traceback(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_OUR_FILES)]
    lines = traceback.format_list(frames[-4:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def call_target(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call user code; turn anything it raises (``SystemExit`` included) into our records."""
    try:
        return fn(*args, **kwargs)
    except SystemExit as e:
        raise TargetExited(e.code) from None
    except BaseException as e:
        msg = str(e)
        if len(msg) > 500:
            msg = msg[:500] + "..."
        key = e.args[0] if isinstance(e, KeyError) and e.args else None
        raise TargetRaised(type(e).__name__, msg, _user_traceback(e), key) from None


def _args_from(calls: Sequence[Call], values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    pos: list[Any] = []
    kw: dict[str, Any] = {}
    for c in calls:
        if c.role in ("hyper", "arg"):
            v = c.value
        elif c.role == "state":
            v = values["state:" + c.state]
        else:
            v = values[c.role]
        if c.positional:
            pos.append(v)
        else:
            kw[c.name] = v
    return pos, kw


def _to_numpy(x: Any, what: str) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return np.array(x.numpy(), copy=True)
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    try:
        arr = np.array(x, copy=True)
    except Exception:
        raise BadReturn(f"{what} is a {type(x).__name__}; expected an array") from None
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise BadReturn(f"{what} is a {type(x).__name__} ({arr.dtype}); expected a numeric array")
    return arr


def _changed(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return True
    return not bool(np.array_equal(a, b, equal_nan=True)) or bool(np.any(np.signbit(a) != np.signbit(b)))


def _copy_tree(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _copy_tree(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def _numeric_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class _Session:
    """One trajectory of the target: created with the parameters, stepped with gradients."""

    def __init__(self, obj: Any, plan: Plan, params0: Any) -> None:
        self.obj = obj
        self.plan = plan
        self.params0 = params0
        self.t = 0

    def step(self, grads: Any) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class DictSession(_Session):
    """The course style: dicts of arrays, state dicts made by the caller, updated in place or returned."""

    def __init__(self, obj: Any, plan: Plan, params0: Mapping[str, np.ndarray]) -> None:
        super().__init__(obj, plan, params0)
        self.keys = list(params0)
        self.reset()

    def reset(self) -> None:
        """Back to the first step with fresh copies of the parameters and zero states."""
        self.t = 0
        self.params: Any = {k: np.array(v, copy=True) for k, v in self.params0.items()}
        sp = self.plan.state_prefix
        self.states: dict[str, Any] = {
            name: {sp + k: np.zeros_like(v) for k, v in self.params0.items()}
            for name in self.plan.state_names
        }

    def step(self, grads: Mapping[str, np.ndarray]) -> StepOutput:
        """One call of the target, as ``parameters, v, s = update(parameters, grads, v, s, t, ...)``."""
        self.t += 1
        gp = self.plan.grad_prefix
        g = {gp + k: np.array(grads[k], copy=True) for k in self.keys}
        g_before = {k: v.copy() for k, v in g.items()}
        values: dict[str, Any] = {"params": self.params, "grads": g, "step": self.t}
        for name in self.plan.state_names:
            values["state:" + name] = self.states[name]
        pos, kw = _args_from(self.plan.calls, values)
        kw.update(self.plan.kwargs_hyper)
        out = call_target(self.obj, *pos, **kw)
        params: Any = self.params
        states = dict(self.states)
        pname = self.plan.param_names
        if out is None:
            pass
        elif isinstance(out, Mapping):
            params = out
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Mapping):
            params = out[0]
            for i, name in enumerate(self.plan.state_names):
                if len(out) > i + 1 and isinstance(out[i + 1], Mapping):
                    states[name] = out[i + 1]
        else:
            raise BadReturn(
                f"returned {_describe_value(out)}; a dict-style update returns nothing (updating {pname} in "
                f"place), {pname}, or ({pname}, {', '.join(self.plan.state_names) or 'states'})"
            )
        p_out = _read_dict(params, self.keys, "", f"the returned {pname}")
        s_out: dict[str, Any] = {}
        for name in self.plan.state_names:
            tree = _read_state_dict(states[name], self.keys, self.plan.state_prefix)
            if tree is not None:
                s_out[name] = tree
        mutated = [f"{self.plan.grad_names}[{k!r}]" for k in g if _changed(g[k], g_before[k])]
        self.params = params
        self.states = states
        returned = "none" if out is None else "params" if isinstance(out, Mapping) else f"tuple:{len(out)}"
        return StepOutput(p_out, s_out, mutated, returned=returned)


def _describe_value(x: Any) -> str:
    if isinstance(x, tuple):
        return f"a tuple of {len(x)} ({', '.join(type(v).__name__ for v in x[:4])})"
    return f"a {type(x).__name__}"


def _read_dict(d: Any, keys: Sequence[str], prefix: str, what: str) -> dict[str, np.ndarray]:
    if not isinstance(d, Mapping):
        raise BadReturn(f"{what} is {_describe_value(d)}; expected a dict of arrays")
    out = {}
    for k in keys:
        if prefix + k not in d:
            missing = prefix + k
            raise BadReturn(f"{what} has no key {missing!r} (keys: {list(d)[:8]})")
        out[k] = _to_numpy(d[prefix + k], f"{what}[{prefix + k!r}]")
    return out


def _read_state_dict(d: Any, keys: Sequence[str], prefix: str) -> dict[str, Any] | None:
    if not isinstance(d, Mapping):
        return None
    out = {}
    for k in keys:
        for cand in (prefix + k, k, "d" + k):
            if cand in d:
                try:
                    out[k] = _to_numpy(d[cand], cand)
                except BadReturn:
                    return None
                break
        else:
            return None
    return out


class ConfigSession(_Session):
    """The cs231n style: ``next_w, config = rule(w, dw, config)``, ``config`` carried between calls."""

    def __init__(self, obj: Any, plan: Plan, params0: np.ndarray) -> None:
        super().__init__(obj, plan, params0)
        self.w = np.array(params0, copy=True)
        self.config: Any = dict(plan.config) if plan.config else None

    def step(self, grads: np.ndarray) -> StepOutput:
        """One call: ``next_w, config = rule(w, dw, config)``."""
        self.t += 1
        dw = np.array(grads, copy=True)
        before = dw.copy()
        values = {"params": self.w, "grads": dw, "config": self.config, "step": self.t}
        pos, kw = _args_from(self.plan.calls, values)
        out = call_target(self.obj, *pos, **kw)
        if isinstance(out, (tuple, list)) and len(out) >= 2 and isinstance(out[1], Mapping):
            w, config = out[0], out[1]
        elif isinstance(out, (tuple, list)) and len(out) == 2 and out[1] is None:
            raise BadReturn("returned (next_w, None); a config-style rule returns (next_w, config)")
        elif self.config is not None and not isinstance(out, (tuple, list, Mapping)) and out is not None:
            w, config = out, self.config
        else:
            raise BadReturn(f"returned {_describe_value(out)}; a config-style rule returns (next_w, config)")
        p_out = _to_numpy(w, "next_w")
        states: dict[str, Any] = {}
        for k, v in config.items():
            if isinstance(v, np.ndarray) or (sys.modules.get("torch") and hasattr(v, "detach")):
                states[k] = _to_numpy(v, f"config[{k!r}]")
            elif _numeric_scalar(v):
                states[k] = float(v)
        mutated = ["dw"] if _changed(dw, before) else []
        self.w, self.config = w, config
        return StepOutput(p_out, states, mutated)


class FunctionalSession(_Session):
    """``param, state = step(param, grad, state, **hyper)`` with ``state=None`` on the first call."""

    def __init__(self, obj: Any, plan: Plan, params0: np.ndarray) -> None:
        super().__init__(obj, plan, params0)
        self.p = np.array(params0, copy=True)
        self.state: Any = None

    def step(self, grads: np.ndarray) -> StepOutput:
        """One call of the function."""
        self.t += 1
        g = np.array(grads, copy=True)
        before = g.copy()
        values: dict[str, Any] = {"params": self.p, "grads": g, "step": self.t}
        for name in self.plan.state_names:
            values["state:" + name] = self.state
        pos, kw = _args_from(self.plan.calls, values)
        kw.update(self.plan.kwargs_hyper)
        out = call_target(self.obj, *pos, **kw)
        if isinstance(out, (tuple, list)) and len(out) == 2:
            p, state = out
        elif not isinstance(out, (tuple, list, Mapping)) and out is not None:
            p, state = out, self.state
        else:
            raise BadReturn(f"returned {_describe_value(out)}; a functional step returns (param, state)")
        p_out = _to_numpy(p, "the returned param")
        mutated = [self.plan.grad_names] if _changed(g, before) else []
        self.p, self.state = p, state
        return StepOutput(p_out, _flat_state(state), mutated)


def _flat_state(state: Any) -> dict[str, Any]:
    """A functional state as ``{name: array or number}`` (dict keys, tuple positions, or ``state``)."""
    out: dict[str, Any] = {}
    if state is None:
        return out
    if isinstance(state, Mapping):
        items = list(state.items())
    elif isinstance(state, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(state)]
    elif dataclasses.is_dataclass(state) and not isinstance(state, type):
        items = [(f.name, getattr(state, f.name)) for f in dataclasses.fields(state)]
    elif hasattr(state, "_asdict"):
        items = list(state._asdict().items())
    else:
        items = [("state", state)]
    for k, v in items:
        if _numeric_scalar(v):
            out[str(k)] = float(v)
            continue
        try:
            arr = _to_numpy(v, str(k))
        except BadReturn:
            continue
        out[str(k)] = arr if arr.shape != () else float(arr)
    return out


class ObjectSession(_Session):
    """``opt = Cls(**hyper)``; ``opt.step(params, grads)`` mutates or returns the parameters."""

    def __init__(self, obj: Any, plan: Plan, params0: Mapping[str, np.ndarray]) -> None:
        super().__init__(obj, plan, params0)
        self.keys = list(params0)
        self.params: Any = {k: np.array(v, copy=True) for k, v in params0.items()}
        pos, kw = _args_from(plan.calls, {"params": self.params})
        kw.update(plan.kwargs_hyper)
        self.opt = call_target(obj, *pos, **kw)

    def step(self, grads: Mapping[str, np.ndarray]) -> StepOutput:
        """One call of ``opt.step``."""
        self.t += 1
        gp = self.plan.grad_prefix
        g = {gp + k: np.array(grads[k], copy=True) for k in self.keys}
        before = {k: v.copy() for k, v in g.items()}
        pos, kw = _args_from(self.plan.step_calls, {"params": self.params, "grads": g, "step": self.t})
        out = call_target(self.opt.step, *pos, **kw)
        params = self.params
        if isinstance(out, Mapping):
            params = out
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Mapping):
            params = out[0]
        elif out is not None:
            raise BadReturn(
                f"step returned {_describe_value(out)}; expected None (in place) or the parameters dict"
            )
        p_out = _read_dict(params, self.keys, "", "the parameters after step")
        self.params = params
        mutated = [f"{self.plan.grad_names}[{k!r}]" for k in g if _changed(g[k], before[k])]
        return StepOutput(p_out, _object_states(self.opt, self.keys), mutated)


def _object_states(opt: Any, keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    attrs = getattr(opt, "__dict__", {})
    for name, val in attrs.items():
        if isinstance(val, Mapping) and val:
            tree = _read_state_dict(val, keys, "")
            if tree is not None:
                out[name] = tree
                continue
            # {"W1": {"m": ..., "v": ...}, ...}: one state per inner key
            inner = [val.get(k) for k in keys]
            if all(isinstance(x, Mapping) for x in inner):
                for ik in inner[0]:  # type: ignore[union-attr]
                    try:
                        out[f"{name}.{ik}"] = {k: _to_numpy(val[k][ik], ik) for k in keys}
                    except (BadReturn, KeyError):
                        continue
        elif _numeric_scalar(val) and name in STEP_NAMES:
            out[name] = float(val)
    return out


class TorchSession(_Session):
    """A ``torch.optim.Optimizer`` subclass over float64 tensors: ``.grad`` set, ``.step()`` called."""

    def __init__(self, obj: Any, plan: Plan, params0: Mapping[str, np.ndarray]) -> None:
        super().__init__(obj, plan, params0)
        import torch

        self.torch = torch
        self.keys = list(params0)
        self.tensors = {
            k: torch.nn.Parameter(torch.from_numpy(np.array(v, copy=True))) for k, v in params0.items()
        }
        pos, kw = _args_from(plan.calls, {"params": list(self.tensors.values())})
        kw.update(plan.kwargs_hyper)
        self.opt = call_target(obj, *pos, **kw)
        try:
            sig = inspect.signature(self.opt.step)
            self.needs_closure = any(
                p.name == "closure" and p.default is inspect.Parameter.empty for p in sig.parameters.values()
            )
        except (TypeError, ValueError):
            self.needs_closure = False

    def step(self, grads: Mapping[str, np.ndarray]) -> StepOutput:
        """Set ``.grad`` and call ``opt.step()``."""
        torch = self.torch
        self.t += 1
        before = {}
        for k, t in self.tensors.items():
            g = torch.from_numpy(np.array(grads[k], copy=True))
            t.grad = g
            before[k] = g.clone()
        if self.needs_closure:
            call_target(self.opt.step, lambda: torch.zeros((), dtype=torch.float64))
        else:
            call_target(self.opt.step)
        p_out = {k: _to_numpy(t, f"params[{k!r}]") for k, t in self.tensors.items()}
        mutated = []
        for k, t in self.tensors.items():
            if t.grad is None or not torch.equal(t.grad, before[k]):
                mutated.append(f"params[{k!r}].grad")
        states: dict[str, Any] = {}
        per = [self.opt.state.get(t, {}) for t in self.tensors.values()]
        names = set().union(*[set(s) for s in per]) if per else set()
        for name in sorted(str(n) for n in names):
            vals = []
            for s in per:
                v = s.get(name)
                vals.append(v)
            if all(v is not None and hasattr(v, "shape") and tuple(v.shape) != () for v in vals):
                try:
                    states[name] = {k: _to_numpy(v, name) for k, v in zip(self.keys, vals, strict=True)}
                except BadReturn:
                    continue
            elif vals and (
                _numeric_scalar(vals[0]) or (hasattr(vals[0], "shape") and tuple(vals[0].shape) == ())
            ):
                try:
                    states[name] = float(vals[0])
                except (TypeError, ValueError):
                    continue
        return StepOutput(p_out, states, mutated)


_SESSIONS: dict[str, type[_Session]] = {
    "dict": DictSession,
    "config": ConfigSession,
    "functional": FunctionalSession,
    "object": ObjectSession,
    "torch": TorchSession,
}

_KEY_FORMS = (("d", "d"), ("", ""), ("d", ""), ("", "d"))


#: Styles served by :class:`optcheck.audit._styles.CallSession` and its subclasses (bound by meaning).
CALL_STYLES = ("dict", "functional", "loop", "triple")


def make_session(obj: Any, plan: Plan, params0: Any) -> _Session:
    """Start a trajectory of the target in ``plan.style`` from ``params0``."""
    if plan.style in ("dict", "functional"):
        from ._styles import CallSession

        return CallSession(obj, plan, params0)
    if plan.style == "object":
        from ._styles import MethodSession

        return MethodSession(obj, plan, params0)
    if plan.style in ("loop", "triple"):
        from ._styles import LoopSession, TripleSession

        return (LoopSession if plan.style == "loop" else TripleSession)(obj, plan, params0)
    return _SESSIONS[plan.style](obj, plan, params0)


def first_step_with_key_forms(obj: Any, plan: Plan, params0: Any, grads: Any) -> tuple[_Session, StepOutput]:
    """The first step, trying the other key forms (``dW1`` vs ``W1``) when the target raises ``KeyError`` on one.

    Sets ``plan.grad_prefix``/``plan.state_prefix`` to the forms that worked.
    """
    if plan.style in (*CALL_STYLES, "object", "loop", "triple"):
        from ._styles import first_call

        return first_call(obj, plan, params0, grads, make_session)
    forms: list[tuple[str, str]] = [(plan.grad_prefix, plan.state_prefix)]
    if plan.style in ("dict", "object"):
        forms += [f for f in _KEY_FORMS if f not in forms]
    keys = list(params0) if isinstance(params0, Mapping) else []
    first_error: TargetRaised | None = None
    for gp, sp in forms:
        plan.grad_prefix, plan.state_prefix = gp, sp
        session = make_session(obj, plan, params0)
        try:
            return session, session.step(grads)
        except TargetRaised as e:
            other = {p + k for k in keys for p in ("", "d")}
            if e.type_name != "KeyError" or e.key not in other:
                if first_error is None:
                    raise
                raise first_error from None
            first_error = first_error or e
    plan.grad_prefix, plan.state_prefix = forms[0]
    assert first_error is not None
    raise first_error


def probe_config(obj: Any, plan: Plan, w: np.ndarray, dw: np.ndarray) -> dict[str, Any]:
    """Call a config-style rule with ``config=None`` and return the config it set up."""
    calls = [c for c in plan.calls if c.role in ("params", "grads", "config", "arg")]
    pos, kw = _args_from(calls, {"params": w.copy(), "grads": dw.copy(), "config": None})
    out = call_target(obj, *pos, **kw)
    if not (isinstance(out, (tuple, list)) and len(out) >= 2 and isinstance(out[1], Mapping)):
        raise BadReturn(
            f"returned {_describe_value(out)} for config=None; a config-style rule returns (next_w, config)"
        )
    config: dict[str, Any] = {}
    for k, v in out[1].items():
        if isinstance(v, np.ndarray) or hasattr(v, "shape"):
            try:
                config[str(k)] = _to_numpy(v, str(k))
            except BadReturn:
                continue
        elif _literal(v):
            config[str(k)] = copy.copy(v)
    return config
