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
    if names and names[0] in ("parameters", "params"):
        return "dict"
    if any(naming.looks_like_state(n) for n in names[2:]):
        return "dict"
    if names and names[0] in PARAMS_NAMES:
        return "functional"
    return "dict"


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


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


class _Binder:
    """Shared state of one binding: the rule's names, the user's values, what is used."""

    def __init__(
        self, info: TargetInfo, rule_cls: Any, hyper: Mapping[str, tuple[str, Any]], args: Mapping[str, Any]
    ) -> None:
        self.info = info
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

    def resolve(self, name: str) -> str | None:
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

    def generic(self, p: ParamInfo, positional: bool = False) -> Call | None:
        """Bind ``p`` as an ``--arg``, a hyperparameter or the course L2 arguments; ``None`` if none applies."""
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
        rname = self.resolve(p.name)
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
) -> Binding:
    """Map every argument of the target to a role for ``style``; raise ``AuditUsageError`` when one cannot be.

    ``hyper`` maps rule hyperparameter names to ``(the name the user wrote, value)``; ``args``
    holds the ``--arg`` values; ``config_defaults`` is what the config style's ``config=None``
    call set up (scalars and arrays).
    """
    b = _Binder(info, rule_cls, hyper, args)
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
    out = Binding(plan, b.ref_hyper, b.notes, b.roles, defaults_differ=b.defaults_differ)
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
    if "weight_decay" in b.hyper:
        raise AuditUsageError(
            f"--hyper weight_decay and {reg_name}={reg!r} both set an L2 coefficient; give only one"
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


def _bind_function(b: _Binder, style: str, config_defaults: Mapping[str, Any] | None) -> Plan:
    info = b.info
    params = list(info.params)
    used: set[str] = set()
    plan = Plan(style=style)
    calls: list[Call] = []
    where = info.signature_text()
    # --arg first: an explicit value always wins
    p_params = _pick(params, PARAMS_NAMES, used) if params and params[0].name not in b.args else None
    if p_params is None:
        p_params = _first_free([p for p in params if p.name not in b.args], used)
    if p_params is None:
        raise AuditUsageError(
            f"{where} takes no argument for the parameters; expected e.g. {style_example(style)}"
        )
    used.add(p_params.name)
    p_grads = _pick(params, GRADS_NAMES, used) or _first_free(
        [p for p in params if p.name not in b.args], used
    )
    if p_grads is None:
        raise AuditUsageError(
            f"{where} takes no argument for the gradients; expected e.g. {style_example(style)}"
        )
    used.add(p_grads.name)
    plan.param_names, plan.grad_names = p_params.name, p_grads.name
    positional = style == "config"
    calls.append(Call(p_params.name, "params", positional=positional or p_params.positional_only))
    calls.append(Call(p_grads.name, "grads", positional=positional or p_grads.positional_only))
    b.roles.append((p_params.name, "parameters"))
    b.roles.append((p_grads.name, "gradients"))
    has_kwargs = any(p.kind == "VAR_KEYWORD" for p in params)
    for p in params:
        if p.name in used or p.is_var:
            continue
        used.add(p.name)
        if p.name in b.args:
            c = b.generic(p, p.positional_only)
            assert c is not None
            calls.append(c)
            continue
        if style == "config" and p.name == "config":
            calls.append(Call(p.name, "config", positional=p.positional_only))
            b.roles.append((p.name, "the config dict"))
            continue
        if style == "functional" and p.name in STATE_ARG_NAMES:
            calls.append(Call(p.name, "state", state=p.name, positional=p.positional_only))
            plan.state_names.append(p.name)
            b.roles.append((p.name, "the optimizer state (None on the first call)"))
            continue
        if (
            naming.is_step_name(p.name)
            and b.resolve(p.name) is None
            and not (p.has_default and p.default is not None and not isinstance(p.default, int))
        ):
            calls.append(Call(p.name, "step", positional=p.positional_only))
            b.roles.append((p.name, "the step number 1, 2, 3, ..."))
            continue
        if (
            style == "dict"
            and (not p.has_default or p.default is None)
            and (
                p.name in _rule_state_keys(b)
                or (naming.looks_like_state(p.name) and b.resolve(p.name) is None)
            )
        ):
            calls.append(Call(p.name, "state", state=p.name, positional=p.positional_only))
            plan.state_names.append(p.name)
            continue
        c = b.generic(p, p.positional_only)
        if c is not None:
            calls.append(c)
            continue
        if p.has_default:
            continue
        if style == "dict" and naming.looks_like_state(p.name):
            # a state dict whose name differs from the usual ones only in case (``Cache``)
            calls.append(Call(p.name, "state", state=p.name, positional=p.positional_only))
            plan.state_names.append(p.name)
            continue
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
    if style == "dict":
        for s in plan.state_names:
            b.roles.append((s, "a state dict (zeros, keyed like the gradients)"))
    return plan


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
        if p.name in ("params", "parameters") and not plan.ctor_params:
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
    if info.step_params is None:
        raise AuditUsageError(
            f"{info.name} has no step method; the object style calls opt.step(params, grads)"
        )
    step_args = [p for p in info.step_params if not p.is_var]
    used: set[str] = set()
    p_params = _pick(step_args, PARAMS_NAMES, used)
    if p_params is not None:
        used.add(p_params.name)
    p_grads = _pick(step_args, GRADS_NAMES, used)
    if p_grads is not None:
        used.add(p_grads.name)
    free = [p for p in step_args if p.name not in used and not p.has_default]
    if p_grads is None and free:
        p_grads = free.pop(0 if (p_params is not None or len(free) == 1) else 1)
        used.add(p_grads.name)
    if p_params is None and free and not plan.ctor_params:
        p_params = free.pop(0)
        used.add(p_params.name)
    if p_grads is None:
        raise AuditUsageError(
            f"{info.name}.step takes no argument for the gradients; expected step(params, grads)"
        )
    if p_params is None and not plan.ctor_params:
        raise AuditUsageError(
            f"{info.name}.step takes no argument for the parameters and the constructor does not take them; "
            "expected step(params, grads)"
        )
    for p in step_args:
        if p is p_params:
            plan.step_calls.append(Call(p.name, "params", positional=p.positional_only))
            plan.param_names = p.name
        elif p is p_grads:
            plan.step_calls.append(Call(p.name, "grads", positional=p.positional_only))
            plan.grad_names = p.name
        elif p.name in b.args:
            b.used_args.add(p.name)
            plan.step_calls.append(Call(p.name, "arg", b.args[p.name], positional=p.positional_only))
        elif naming.is_step_name(p.name) and not p.has_default:
            plan.step_calls.append(Call(p.name, "step", positional=p.positional_only))
        elif not p.has_default:
            raise b.unbound(p, f"{info.name}.step")
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
