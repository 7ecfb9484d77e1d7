"""Calling conventions ("styles") and binding the target's arguments by name.

Five styles, detected from the target's signature (``--style`` overrides):

* ``dict``: the course style, ``update_parameters_with_adam(parameters, grads, v, s, t,
  learning_rate, beta1, beta2, epsilon)``: dicts ``W1, b1, ...`` / ``dW1, db1, ...``, state
  dicts created by the caller, updated in place or returned after ``parameters``;
* ``config``: the cs231n style ``rmsprop(w, dw, config=None) -> (next_w, config)``;
* ``functional``: ``step(param, grad, state, **hyper) -> (param, state)``, ``state=None`` first;
* ``object``: a class constructed with the hyperparameters, ``opt.step(params, grads)``;
* ``torch``: a ``torch.optim.Optimizer`` subclass, stepped over real tensors.

:func:`bind` maps every parameter of the target to a role and returns a
:class:`~optcheck.audit._common.Plan`; the sessions (:mod:`optcheck.audit.sessions`, in the
parent, driving the child process) call the target the way a user's training loop would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..rules import naming
from ._common import AuditUsageError, Call, ParamInfo, Plan, TargetInfo

__all__ = [
    "STYLES",
    "Binding",
    "bind",
    "detect_style",
    "map_states",
    "resolve_hyper",
]

STYLES = ("dict", "config", "functional", "object", "torch")

# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

# Every name table lives in optcheck.rules.naming (the guard uses the same one).
PARAMS_NAMES = naming.PARAMS_NAMES
GRADS_NAMES = naming.GRADS_NAMES
STATE_ARG_NAMES = naming.STATE_ARG_NAMES
REG_NAMES = naming.COURSE_L2_NAMES
BATCH_NAMES = naming.BATCH_NAMES
HYPER_ALIASES = naming.HYPER_ALIASES
COMMON_ALIASES = naming.COMMON_ALIASES


def resolve_hyper(name: str, hyper_names: Sequence[str], context: Sequence[str] = ()) -> str | None:
    """The rule hyperparameter that ``name`` means (see :func:`optcheck.rules.naming.resolve_hyper`)."""
    return naming.resolve_hyper(name, hyper_names, context)


def aliases_for(hyper_names: Sequence[str]) -> dict[str, str]:
    """Every alias that resolves for a rule with ``hyper_names``: alias -> rule name."""
    return naming.hyper_aliases(hyper_names)


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
        self.meaning = naming.resolve_hypers([p.name for p in info.params if not p.is_var], self.hyper_names)
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
        self.rule_defaults_used: list[tuple[str, str, Any]] = []

    def resolve(self, name: str, names: Sequence[str] = ()) -> str | None:
        """The rule hyperparameter the target's argument ``name`` means, judged with its other arguments."""
        if naming.is_course_l2(name, self.hyper_names):
            return None  # the course's λ: weight decay divided by the batch size, see _course_l2
        if name in self.meaning:
            return self.meaning[name]
        return naming.resolve_hyper(name, self.hyper_names)

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
            if rname not in self.ref_hyper:
                self.rule_defaults_used.append((rname, pname, value))
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
        rname = self.resolve(p.name)
        if p.name in self.args and rname is not None:
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
            if naming.is_course_l2(p.name, self.hyper_names):
                self.reg = (p.name, value)
            elif p.name in BATCH_NAMES:
                self.batch = (p.name, value)
            self.roles.append((p.name, f"--arg {p.name}={_fmt(value)}"))
            return Call(p.name, "arg", value, positional=positional)
        if p.name == "betas" and "beta1" in self.specs and "beta2" in self.specs:
            value = self.betas_value(p)
            self.roles.append((p.name, f"(beta1, beta2)={value!r}"))
            return Call(p.name, "hyper", value, positional=positional, source="betas")
        if rname is not None and p.has_default and p.default is None and rname not in self.hyper:
            # a default of None means "the target decides" (transformers' Adafactor: lr=None is its
            # relative step size); passing the rule's default instead can be refused, so leave it out
            value = self.ref_hyper.setdefault(rname, self.specs[rname].default)
            self.notes.append(
                f"{p.name}: the target's default is None (its own choice); not passed, the reference uses "
                f"{rname}={_fmt(value)}; give --hyper {rname}=VALUE to pass a value"
            )
            self.roles.append((p.name, f"not passed (default None); reference {rname}={_fmt(value)}"))
            return None
        if rname is not None:
            value = self.hyper_value(p.name, rname, p)
            self.roles.append((p.name, f"{rname}={_fmt(value)}" if rname != p.name else f"={_fmt(value)}"))
            return Call(p.name, "hyper", value, positional=positional, source=rname)
        if (
            naming.is_course_l2(p.name, self.hyper_names)
            and p.has_default
            and isinstance(p.default, (int, float))
        ):
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
    if b.rule_defaults_used:
        given = ", ".join(f"{pname}={_fmt(value)}" for _, pname, value in b.rule_defaults_used)
        b.notes.insert(
            0,
            f"no default in the target for {given}: passed {rule_cls.name}'s defaults (the reference uses the "
            "same); give --arg NAME=VALUE to audit other values",
        )
    out = Binding(plan, b.ref_hyper, b.notes, b.roles, defaults_differ=b.defaults_differ, bound=b.bound_hyper)
    _course_l2(b, out)
    unbound_user = [b.hyper[r][0] for r in b.hyper if r not in b.bound_hyper and r not in plan.kwargs_hyper]
    if plan.style == "config":
        unbound_user = []
    for name in unbound_user:
        out.notes.append(
            f"{name}: {info.name} takes no argument for it; the reference uses {name}="
            f"{_fmt(b.ref_hyper[b.resolve(name) or name])} and the target must do the same"
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

GRADFN_NAMES = naming.GRADFN_NAMES
LOOP_NAMES = naming.LOOP_NAMES
CALLBACK_NAMES = naming.CALLBACK_NAMES
PLURAL_PARAMS = naming.PLURAL_PARAMS
#: Roles ``--bind NAME=ROLE`` accepts (besides a hyperparameter name of the rule).
BIND_ROLES = ("params", "grads", "state", "step", "grad_fn", "callback", "iters", "ignore")


def _role_by_name(p: ParamInfo, named: Mapping[str, str], b: _Binder, names: Sequence[str]) -> str | None:
    """The role the name (and annotation, default) of ``p`` says it has, or ``None``."""
    n = p.name
    if "callable" in (p.annotation or "").lower():
        return "grad_fn"
    role = named.get(n)
    numeric_default = isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
    if role == "step" and p.has_default and p.default is not None and not isinstance(p.default, int):
        role = None  # ``step=0.01`` is a step size
    if role == "state" and p.has_default and p.default is not None:
        role = None
    if role is not None and not (role == "state" and n in BATCH_NAMES and numeric_default):
        return role
    if n == "betas" or b.resolve(n, names) is not None:
        return "hyper"
    if n in REG_NAMES or n in BATCH_NAMES:
        return "l2"
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
    named = naming.argument_roles(names)
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
        role = _role_by_name(p, named, b, names)
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
_EXTRA_GRAD_NAMES = ("dvar", "dweights", "dparam", "grad_w", "grad_params", "gs", "dws")


def _grad_like(names: Sequence[str]) -> bool:
    """Whether one of ``names`` is named like gradients (or a function returning them)."""
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
        if naming.is_step_name(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        rname = b.resolve(key)
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
        if a in b.used_args or a in [p.name for p in b.info.params]:
            continue
        if a in defaults:  # a key of the target's own config: set it there
            plan.config[a] = v
            b.used_args.add(a)
        else:
            raise AuditUsageError(
                f"--arg {a}: {b.info.name} takes no argument {a!r} and its config has no key {a!r} "
                f"(arguments: {[p.name for p in b.info.params if not p.is_var]}, config keys: {list(defaults)})"
            )


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
        b.bound_hyper.add(b.resolve(name) or name)
        b.notes.append(
            f"{name}: {info.name}'s constructor does not accept it; not passed (the reference uses it)"
        )
    return plan


# ---------------------------------------------------------------------------------------------
# Mapping the target's state names to the rule's
# ---------------------------------------------------------------------------------------------


def map_states(user_names: Sequence[str], rule: Any) -> dict[str, str]:
    """Map the target's state names to the rule's state keys (``{"S": "square_avg"}``).

    :func:`optcheck.rules.naming.map_states`, the map the guard uses too; a name it cannot
    place is left out (the audit then does not compare that state).
    """
    return dict(naming.map_states(rule, list(user_names)).keys)
