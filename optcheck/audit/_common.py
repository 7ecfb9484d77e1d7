"""Records shared by the parent (engine, report) and the isolated child (adapters).

Everything here is plain data built in the parent; :meth:`TargetInfo.from_plain` builds the
description of a target from what the child sent (validated: the child is not trusted).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._core.errors import UsageError

__all__ = [
    "AuditUsageError",
    "Call",
    "ParamInfo",
    "Plan",
    "StepOutput",
    "TargetInfo",
]


class AuditUsageError(UsageError):
    """The audit could not run: bad arguments, an unknown rule, a target that cannot be loaded or bound.

    ``python -m optcheck audit`` prints the message as one line on stderr and exits with status 2.
    """


_KINDS = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD")


def _literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, tuple):
        return all(_literal(v) for v in value)
    return False


def _text(v: Any, n: int = 500) -> str:
    return v[:n] if isinstance(v, str) else ""


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """One parameter of a target's signature, as the child process saw it.

    ``kind`` is ``inspect.Parameter.kind``'s name (``POSITIONAL_OR_KEYWORD``, ``VAR_KEYWORD``, ...).
    ``default`` is the default value when it is a plain literal (number, bool, string, None, tuple
    of those), else its ``repr`` in ``default_repr``; ``has_default`` says whether there is one.
    """

    name: str
    kind: str
    has_default: bool = False
    default: Any = None
    default_repr: str = ""
    annotation: str = ""

    @classmethod
    def from_plain(cls, d: Any) -> ParamInfo:
        """A parameter from the child's plain description; ``ValueError`` when malformed."""
        if not isinstance(d, dict):
            raise ValueError("a parameter is not a dict")
        name, kind = d.get("name"), d.get("kind")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a parameter name {str(name)[:40]!r} is not a Python name")
        if kind not in _KINDS:
            raise ValueError(f"a parameter kind {str(kind)[:40]!r} is unknown")
        default = d.get("default")
        if not _literal(default):
            raise ValueError(f"the default of {name!r} is not a plain literal")
        return cls(
            name=name,
            kind=kind,
            has_default=bool(d.get("has_default")),
            default=default,
            default_repr=_text(d.get("default_repr")),
            annotation=_text(d.get("annotation")),
        )

    @property
    def is_var(self) -> bool:
        """Whether this is ``*args`` or ``**kwargs``."""
        return self.kind in ("VAR_POSITIONAL", "VAR_KEYWORD")

    @property
    def positional_only(self) -> bool:
        """Whether the parameter can only be passed by position."""
        return self.kind == "POSITIONAL_ONLY"


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    """What the child process learnt about the target after importing it.

    ``kind`` is ``"function"`` or ``"class"``. For a function, ``params`` is its signature; for a
    class, ``params`` is the constructor's (without ``self``) and ``step_params`` the signature of
    its ``step`` method (``None`` when it has none). ``is_torch_optimizer`` is true for a subclass
    of ``torch.optim.Optimizer``. ``methods`` lists a class's public methods with their
    signatures (without ``self``); ``method`` is the method a ``Class.method`` target names (the
    audit then constructs the class and calls that method).
    """

    spec: str
    name: str
    kind: str
    params: tuple[ParamInfo, ...]
    step_params: tuple[ParamInfo, ...] | None = None
    is_torch_optimizer: bool = False
    file: str | None = None
    module: str = ""
    import_line: str = ""
    methods: dict[str, tuple[ParamInfo, ...]] = dataclasses.field(default_factory=dict)
    method: str = ""

    @classmethod
    def from_plain(cls, d: Any, spec_text: str = "") -> TargetInfo:
        """The description the child sent (``optcheck.audit._worker.describe``), validated."""
        if not isinstance(d, dict):
            raise ValueError("the description is not a dict")
        kind = d.get("kind")
        if kind not in ("function", "class", "method", "object"):
            raise ValueError(f"unknown kind {str(kind)[:40]!r}")

        def params(v: Any) -> tuple[ParamInfo, ...]:
            if not isinstance(v, list) or len(v) > 1000:
                raise ValueError("a parameter list is not a list")
            return tuple(ParamInfo.from_plain(p) for p in v)

        step = d.get("step_params")
        methods = d.get("methods") or {}
        if not isinstance(methods, dict) or not all(isinstance(k, str) for k in methods):
            raise ValueError("methods is not a dict of names")
        file = d.get("file")
        return cls(
            spec=spec_text,
            name=_text(d.get("name")) or "target",
            kind="function" if kind == "method" else "class" if kind == "class" else str(kind),
            params=params(d.get("params", [])),
            step_params=None if step is None else params(step),
            is_torch_optimizer=d.get("is_torch_optimizer") is True,
            file=file if isinstance(file, str) else None,
            module=_text(d.get("module")),
            methods={k: params(v) for k, v in methods.items()},
        )

    def signature_text(self) -> str:
        """``name(a, b, c=1)`` for messages."""
        parts = []
        for p in self.params:
            prefix = "*" if p.kind == "VAR_POSITIONAL" else "**" if p.kind == "VAR_KEYWORD" else ""
            parts.append(prefix + p.name + (f"={p.default_repr}" if p.has_default else ""))
        return f"{self.name}({', '.join(parts)})"

    def param(self, name: str) -> ParamInfo | None:
        """The parameter called ``name``, if any."""
        return next((p for p in self.params if p.name == name), None)


@dataclasses.dataclass(frozen=True)
class Call:
    """How one argument of a target call is filled.

    ``role`` is ``"params"``, ``"grads"`` (for ``container="args"``: one array each, ``state``
    holds its key), ``"state"`` (``state`` names which), ``"ostate"`` (a state object the target
    makes itself: ``None`` first, then what it returned), ``"grad_fn"`` (a function returning the
    gradient), ``"step"``, ``"callback"`` (``None``), ``"key"`` (the array's key, per-key calls),
    ``"hyper"`` or ``"arg"`` (``value`` holds the value), or ``"config"`` (the cs231n config dict).
    ``positional`` passes the value by position (positional-only parameters, ``w, dw`` of the
    config style); otherwise it is passed by keyword.
    """

    name: str
    role: str
    value: Any = None
    state: str = ""
    positional: bool = False
    source: str = ""


@dataclasses.dataclass
class Plan:
    """How to call the target: the adapter style and the bound arguments.

    * ``calls``: the arguments of the function (function styles), of the constructor
      (``object``) or of the torch optimizer's constructor (``torch``, without ``params``);
    * ``step_calls``: the arguments of ``step`` for the ``object`` style;
    * ``state_names``: the user's names of the state containers, in call order
      (``["v", "s"]``, the config's array keys, ...);
    * ``config``: the hyperparameter entries the config style puts in the first ``config``;
    * ``grad_prefix``/``state_prefix``: the key forms of the dict style (``"d"``: ``grads["dW1"]``);
    * ``ctor_params``: whether the object style's constructor takes the parameters;
    * ``param_names``: the user's name for the parameter container (``parameters``, ``w``, ...);
    * ``key_base``: the number of the first layer in the target's keys (1: ``W1``; 0: ``W0``);
      the audit always numbers from 1 and renames the keys on the way in and out;
    * ``container``: how the parameters (and gradients, states) are handed over: ``"dict"``,
      ``"array"`` (one array), ``"list"``/``"tuple"`` (the arrays in key order) or ``"args"``
      (one argument per array: ``update(t, w, b, dw, db)``; the keys are the argument names);
    * ``direction``: the target returns the step instead of the new parameters (no parameters
      argument): ``+1`` when the new parameters are ``p + step``, ``-1`` for ``p - step``,
      ``0`` before the first call decided it;
    * ``method``/``after``: the object styles' update method and the method called once after
      each full update (``step()`` advancing time), ``per_key``: the method is called once per
      array with its key (``update(param, grad, name)``);
    * ``arg_keys``: for ``container="args"``, target argument -> params key (``{"dw": "w"}``);
    * ``containers``: the containers still to try at the first call, in order (the probe call
      keeps the first that the target accepts);
    * ``given``: the target's own names of the hyperparameters it reads from elsewhere than its
      arguments (the config style's keys) -> the value it uses;
    * ``owner``: for a ``Class.method`` target, the class the audit constructs (the target is its
      method).
    """

    style: str
    calls: list[Call] = dataclasses.field(default_factory=list)
    step_calls: list[Call] = dataclasses.field(default_factory=list)
    state_names: list[str] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    grad_prefix: str = "d"
    state_prefix: str = "d"
    ctor_params: str = ""
    param_names: str = "params"
    grad_names: str = "grads"
    kwargs_hyper: dict[str, Any] = dataclasses.field(default_factory=dict)
    key_base: int = 1
    container: str = "dict"
    direction: int = 0
    method: str = "step"
    after: str = ""
    per_key: str = ""
    arg_keys: dict[str, str] = dataclasses.field(default_factory=dict)
    containers: tuple[str, ...] = ()
    given: dict[str, Any] = dataclasses.field(default_factory=dict)
    owner: str = ""


@dataclasses.dataclass
class StepOutput:
    """What one call of the target produced, converted to numpy.

    ``params`` has the structure of the parameters given (a dict keyed by the parameter names, or
    one array); ``states`` maps the user's name of each state entry (``"S"``, ``"config['cache']"``,
    ``"exp_avg"``) to a tree with that structure, or to a number (step counters);
    ``mutated`` names the inputs the call changed in place that it should not have (gradients);
    ``printed`` counts the characters the target printed, ``printed_head`` is the start of it;
    ``returned`` says what the call returned (``"none"``, ``"params"``, ``"tuple:3"``), for snippets.
    """

    params: Any
    states: dict[str, Any]
    mutated: list[str] = dataclasses.field(default_factory=list)
    printed: int = 0
    printed_head: str = ""
    note: str = ""
    returned: str = ""
