"""The audit engine: generated inputs -> the target (isolated) -> invariants + differential test -> findings.

:func:`run_audit` is what ``python -m optcheck audit`` and :func:`optcheck.testing.audit` call.
The order of work:

1. load the target in a child process and bind its arguments (:mod:`.adapters`);
2. run a few fixed *probe* trajectories (seeded normal values, one with zero gradients, one
   where epsilon matters), re-run the first to detect nondeterminism, and when the target
   disagrees with the reference, ask :func:`optcheck.diagnose.explain` whether a known
   convention explains it (then the rest of the audit uses that convention as the reference);
3. let Hypothesis search generated trajectories (``optcheck.strategies``, adversarial values
   included) for every kind of error finding, shrinking each to a minimal example;
4. explain the differences from the reference with diagnosis, and build the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import rules as rules_mod
from .._compare import compare_trajectory, show_pair
from .._core import validate as _v
from .._core.errors import UsageError
from .._trajectory import Trajectory, replay
from .._tree import Path, flatten, map_tree, path_str
from ..rules import Rule, naming
from . import _styles, adapters, sessions
from ._common import AuditUsageError, Plan, StepOutput, TargetInfo
from .report import AuditReport, Finding
from .targets import (
    InProcessWorker,
    Limits,
    ProcessWorker,
    TargetFailure,
    TargetSpec,
    parse_target,
    spec_for_object,
)

__all__ = ["DEFAULT_EXAMPLES", "DEFAULT_MAX_TIME", "DEFAULT_STEPS", "DEFAULT_TIMEOUT", "run_audit"]

DEFAULT_EXAMPLES = 60
DEFAULT_STEPS = 5
DEFAULT_TIMEOUT = 10.0

#: Seconds the whole audit may take (``--max-time``) before it reports what it covered.
DEFAULT_MAX_TIME = 300.0

#: Seconds the target's module may take to import (``max(60, --timeout)``, at most ``--max-time``).
LOAD_TIMEOUT = 60.0

#: Finding ids that end the search: the target is broken in a way that costs a restart per example.
FATAL = ("timeout", "crashed", "exited", "protocol-violation")


class BudgetExhausted(Exception):
    """The audit's ``--max-time`` ran out."""


@contextlib.contextmanager
def hypothesis_storage() -> Iterator[None]:
    """Point Hypothesis's storage at the user's cache directory while the audit runs, so that
    nothing (``.hypothesis/``) is written to the current directory; restored afterwards."""
    try:
        import hypothesis.configuration as hc
    except ImportError:  # pragma: no cover - hypothesis is a dependency
        yield
        return
    key = "__hypothesis_home_directory"
    before = vars(hc).get(key)
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    hc.set_hypothesis_home_dir(os.path.join(base, "optcheck", "hypothesis"))
    try:
        yield
    finally:
        hc.set_hypothesis_home_dir(before)


#: Invariants whose bound depends on the reference rule: reported only when the target also
#: disagrees with the reference (a convention may legitimately move differently).
RULE_BOUND_INVARIANTS = ("update-too-large", "update-without-gradient")

#: Invariants that judge a state by the role the reference's name map gives it: withdrawn when
#: nothing reproduces the target (its states' roles are then unconfirmed).
ROLE_BOUND_INVARIANTS = (
    "negative-second-moment",
    "sqrt-of-negative",
    "accumulator-decreased",
    "state-not-updated",
    "update-without-gradient",
)

#: Invariants that need a rule (its state roles, its bound): not checked with ``--rule none``.
RULE_DEPENDENT = (
    "negative-second-moment",
    "sqrt-of-negative",
    "accumulator-decreased",
    "update-without-gradient",
    "update-too-large",
)

#: Rounds of find-and-shrink (one per kind of error finding, at most).
MAX_ROUNDS = 3

#: Runs of the target one round may spend shrinking its example.
SHRINK_CALLS = 25

#: Runs of the target spent replacing the odd values of a shrunk case by 0, 1 or -1.
ROUND_VALUE_CALLS = 16

#: Candidates diagnosis may replay to explain a difference from the reference (a count, never
#: seconds, so that ``--seed`` reproduces the report on any machine).
DIAGNOSE_BUDGET = 3000

#: The rules ``--rule auto`` binds the target's argument names against, in order of preference.
AUTO_ORDER = (
    "adam",
    "sgd",
    "rmsprop",
    "adagrad",
    "adadelta",
    "adamax",
    "nadam",
    "radam",
    "adamw",
    "lion",
    "asgd",
    "rprop",
    "adafactor",
)

#: Rule candidates ``--rule auto`` may replay to identify the rule (a count, never seconds).
IDENTIFY_BUDGET = 2500

#: Characters of output above which a target's printing is reported.
PRINT_REPORT_THRESHOLD = 100_000


@dataclasses.dataclass
class Case:
    """One generated input: the parameters before the first step and the gradient of each step."""

    params0: Any
    grads: list[Any]
    label: str = ""

    def truncated(self, steps: int) -> Case:
        """The case with only the first ``steps`` gradients."""
        return Case(self.params0, self.grads[:steps], self.label)


@dataclasses.dataclass
class CaseResult:
    """What the target did on one case, and the findings it shows (without examples yet)."""

    case: Case
    outputs: list[StepOutput]
    traj: Trajectory
    failure: tuple[int, TargetFailure] | None
    findings: list[Finding]
    divergence: Any = None

    def error_ids(self) -> set[str]:
        """The ids of the error findings."""
        return {f.id for f in self.findings if f.severity == "error"}


class _Round:
    """The condition of one ``hypothesis.find`` round: a case showing an error finding not in ``done``.

    ``last`` is the latest (smallest) such case. Shrinking stops after ``SHRINK_CALLS`` more runs
    of the target (a budget counted in runs, not seconds, so that ``--seed`` reproduces a run
    exactly on any machine): from then on a case not seen before counts as not interesting
    without running it, and a case seen before gets its first answer again, so Hypothesis sees
    a consistent condition and ends with the smallest case found. After a hang, crash or exit
    (``fatal``) nothing runs any more.
    """

    def __init__(self, auditor: Auditor, done: frozenset[str]) -> None:
        self.auditor = auditor
        self.done = done
        self.last: CaseResult | None = None
        self.shrink_calls = 0
        self.fatal = False
        self._seen: dict[bytes, bool] = {}

    def __call__(self, case: Case) -> bool:
        key = _case_key(case)
        if key in self._seen:
            return self._seen[key]
        if self.fatal:
            return False
        if self.last is not None:
            self.shrink_calls += 1
            if self.shrink_calls > SHRINK_CALLS:
                return False
        a = self.auditor
        res = a.run_case(case, 100 + a.cases_run)
        if res.failure is not None and res.failure[1].id in FATAL:
            self.last = res
            self.fatal = True
            self._seen[key] = True
            return True
        new = res.error_ids() - self.done
        if new:
            if self.last is None:
                a._record(res, shrunk=False)
                a.failing.append(res)
            self.last = res
        self._seen[key] = bool(new)
        return bool(new)


def _replace_entry(tree: Any, path: Path, index: int, value: float) -> Any:
    """A copy of ``tree`` with entry ``index`` (flat) of the leaf at ``path`` set to ``value``."""

    def visit(p: Path, leaf: Any) -> Any:
        if p != path:
            return leaf
        out = np.array(leaf, copy=True)
        out.reshape(-1)[index] = value
        return out

    return _map_with_path(tree, (), visit)


def _map_with_path(tree: Any, prefix: Path, fn: Callable[[Path, Any], Any]) -> Any:
    if isinstance(tree, Mapping):
        return {k: _map_with_path(v, (*prefix, k), fn) for k, v in tree.items()}
    return fn(prefix, tree)


def _case_key(case: Case) -> bytes:
    """A key identifying a case's arrays exactly (shapes, dtypes and bytes)."""
    parts: list[bytes] = []
    for tree in (case.params0, *case.grads):
        for path, leaf in flatten(tree):
            arr = np.ascontiguousarray(leaf)
            parts.append(f"{path}{arr.shape}{arr.dtype}".encode())
            parts.append(arr.tobytes())
    return b"|".join(parts)


def _parse_hyper(rule_cls: type[Rule], hyper: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    names = [s.name for s in rule_cls.hyper_specs()]
    out: dict[str, tuple[str, Any]] = {}
    for given, value in hyper.items():
        if given == "betas" and "beta1" in names:
            try:
                b1, b2 = value
            except (TypeError, ValueError):
                raise AuditUsageError(
                    f"--hyper betas={value!r} is invalid; expected a pair such as (0.9, 0.999)"
                ) from None
            out["beta1"] = ("betas", b1)
            out["beta2"] = ("betas", b2)
            continue
        rname = adapters.resolve_hyper(given, names)
        if rname is None:
            aliases = adapters.aliases_for(names)
            common = [a for a in adapters.COMMON_ALIASES if a in aliases][:6]
            alias_text = f" (or an alias such as {', '.join(common)})" if common else ""
            raise AuditUsageError(
                f"--hyper {given}: {rule_cls.name} has no hyperparameter {given!r}; it takes {names}{alias_text}"
            )
        if rname in out and out[rname][1] != value:
            raise AuditUsageError(
                f"--hyper {given}={value!r} and --hyper {out[rname][0]}={out[rname][1]!r} both set {rname}; give one"
            )
        out[rname] = (given, value)
    return out


class Auditor:
    """One audit: owns the worker, the binding, the reference and the findings so far."""

    def __init__(
        self,
        target: Any,
        rule: str,
        *,
        hyper: Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
        style: str = "auto",
        seed: int = 0,
        examples: int | None = None,
        steps: int | None = None,
        timeout: float | None = None,
        progress: Callable[[str], None] | None = None,
        isolate: bool | None = None,
        cwd: str | None = None,
        bind: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        max_time: float | None = None,
    ) -> None:
        self.t0 = time.monotonic()
        self.seed = _check_int("seed", seed, 0)
        self.examples = _check_int("examples", DEFAULT_EXAMPLES if examples is None else examples, 1)
        self.steps = _check_int("steps", DEFAULT_STEPS if steps is None else steps, 1)
        self.steps_given = steps is not None
        self.timeout = float(DEFAULT_TIMEOUT if timeout is None else timeout)
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise AuditUsageError(f"--timeout {timeout!r} is invalid; expected a positive number of seconds")
        self.max_time = float(DEFAULT_MAX_TIME if max_time is None else max_time)
        if isinstance(max_time, bool) or not (self.max_time > 0 and math.isfinite(self.max_time)):
            raise AuditUsageError(
                f"--max-time {max_time!r} is invalid; expected a positive number of seconds"
            )
        self.deadline = self.t0 + self.max_time
        self.exhausted = False
        self.limits = dataclasses.replace(
            limits or Limits(),
            timeout=self.timeout,
            load_timeout=min(max(LOAD_TIMEOUT, self.timeout), self.max_time),
        )
        if style != "auto" and style not in adapters.STYLES:
            raise AuditUsageError(
                f"--style {style!r} is invalid; expected auto or one of {list(adapters.STYLES)}"
            )
        self.style_arg = style
        self.auto = isinstance(rule, str) and rule.strip().lower() == "auto"
        # --rule none: the invariants that hold for every update rule, no reference at all
        self.none = isinstance(rule, str) and rule.strip().lower() == "none"
        self.hyper_given = dict(hyper or {})
        if self.auto or self.none:
            self.rule_cls = rules_mod.rule_class(AUTO_ORDER[0])
        else:
            try:
                self.rule_cls = rules_mod.rule_class(rule)
            except (ValueError, TypeError) as e:
                raise AuditUsageError(f"--rule: {e}") from None
            self.hyper_in = _parse_hyper(self.rule_cls, self.hyper_given)
            try:  # every value must make a valid reference before anything is bound or run
                rules_mod.get(self.rule_cls.name, **{r: v for r, (_, v) in self.hyper_in.items()})
            except (ValueError, TypeError) as e:
                raise AuditUsageError(f"--hyper: {e}") from None
        self.rule_name = self.rule_cls.name
        self.args = dict(args or {})
        self.bind = dict(bind or {})
        self.progress = progress
        self._last_progress = 0.0
        self.cases_run = 0
        # the worker
        if isinstance(target, str):
            self.spec: TargetSpec | None = parse_target(target, cwd)
            self.target_text = target
            obj = None
        else:
            if not callable(target):
                raise AuditUsageError(f"target must be a function or a class, got {type(target).__name__}")
            self.spec = spec_for_object(target) if isolate is not False else None
            self.target_text = getattr(target, "__qualname__", repr(target))
            obj = target
        self._object = obj
        self._isolate_required = isolate is True
        if isolate is True and self.spec is None:
            raise AuditUsageError(
                f"isolate=True: {self.target_text} cannot be re-imported in a child process (define it at the "
                "top level of a .py file or module), or pass isolate=None to run it in this process"
            )
        if self.spec is not None and isolate is not False:
            self.worker: Any = ProcessWorker(self.spec, cwd=cwd, limits=self.limits)
            self.worker.start()
        else:
            if obj is None:
                from .targets import load_target

                try:
                    obj = load_target(self.spec)  # type: ignore[arg-type]
                except Exception as e:
                    raise AuditUsageError(f"target {self.target_text!r} could not be imported: {e}") from None
            self.worker = InProcessWorker(obj, self.target_text, self.limits)
        self.notes: list[str] = []
        self.findings: dict[str, Finding] = {}
        self.provisional: dict[str, tuple[Finding, Case]] = {}
        self.conventions: list[str] = []
        self.convention_findings: list[Finding] = []
        self.failing: list[CaseResult] = []
        self.returned = ""
        self.probe_results: list[CaseResult] = []
        self.explanation: Any = None
        self.config_failure: TargetFailure | None = None
        self._cases: dict[str, Case] = {}
        self.torch_options: list[str] = []  # the situations a torch optimizer was also run in
        self.torch_options_not_run: list[str] = []

    # -- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        """Load and describe the target, pick the style, bind the arguments, build the reference."""
        if isinstance(self.worker, ProcessWorker) and self._object is not None and not self._isolate_required:
            try:
                self.worker.load()
            except AuditUsageError as e:  # the child cannot re-import it: run it here instead
                self.worker.close()
                self.worker = InProcessWorker(self._object, self.target_text, self.limits)
                self.notes.append(
                    f"ran in this process: a child process could not re-import the target ({e})"
                )
        info: TargetInfo = self.worker.load()
        info = self._method_target(info)
        self.info = info
        style = adapters.detect_style(info) if self.style_arg == "auto" else self.style_arg
        if style == "torch" and not info.is_torch_optimizer:
            raise AuditUsageError(
                f"--style torch needs a torch.optim.Optimizer subclass; {info.name} is a {info.kind}"
                + (" (is torch installed?)" if info.kind == "class" else "")
            )
        if style in ("object", "torch") and info.kind != "class":
            raise AuditUsageError(f"--style {style} needs a class; {info.name} is a function")
        if style in ("dict", "config", "functional") and info.kind != "function":
            raise AuditUsageError(
                f"--style {style} needs a function; {info.name} is a class (use --style object or torch)"
            )
        self.style = style
        config_defaults = None
        if style == "config":
            own_args = {k: v for k, v in self.args.items() if info.param(k) is not None}
            probe_plan = adapters.bind(info, "config", self.rule_cls, {}, own_args, {}).plan
            w, dw = self._probe_arrays()
            try:
                self._set_call_timeout()
                config_defaults = sessions.probe_config(self.worker, probe_plan, w, dw)
            except TargetFailure as f:
                self.config_failure = f
                config_defaults = {}
                self.notes.append(f"calling it with config=None {f.detail}; its defaults are unknown")
        if self.auto or self.none:
            self._bind_auto(info, style, config_defaults)
        else:
            self.binding = adapters.bind(
                info, style, self.rule_cls, self.hyper_in, self.args, config_defaults, self.bind
            )
        self.plan: Plan = self.binding.plan
        self.plan.owner = getattr(self, "_owner", "")
        self.notes.extend(self.binding.notes)
        try:
            self.rule = rules_mod.get(self.rule_name, **self.binding.ref_hyper)
        except (ValueError, TypeError) as e:
            raise AuditUsageError(f"--hyper: {e}") from None
        if self.none:
            self.rule_name = "none"
            self.notes.append(
                "--rule none: no reference rule; only what holds for every update rule is checked (shapes and "
                "dtypes kept, no NaN or inf from finite inputs, gradients not modified, the same result twice, "
                "no crash); the arguments were bound by their names as for "
                f"{self.rule_cls.name}"
            )
        else:
            self._steps_for_rule()
        self.conventions_base: list[str] = []
        if self.binding.l2 is not None:
            self.conventions_base.append("course-l2")
        for key, default, used in self.binding.defaults_differ:
            self.convention_findings.append(
                Finding(
                    "config-default-differs",
                    "info",
                    f"config[{key!r}] defaults to {default!r} in the target; the audit used {used!r} (--hyper)",
                    where=f"config[{key!r}]",
                )
            )
        self.ref_variant: Any = None
        self.state_map: dict[str, str] | None = None
        self.unused_states: list[str] = []
        self.passed: dict[str, Any] | None = None
        self._ident_unsure = ""
        self.layer_base = 1
        self._probe_call()

    def _probe_call(self) -> None:
        """One call of a function target on a probe, to learn what its code expects.

        The containers its argument names allow (a dict, one array, a list) are tried in turn
        until the target accepts one; the first call also settles the key forms (``dW1`` or
        ``W1``, layers numbered from 0 or 1) and, for a target that returns its step, the sign.
        Every later case is generated in those forms.
        """
        plan = self.plan
        if plan.style not in _styles.STYLES:
            return
        containers = plan.containers or (plan.container,)
        chosen = None
        for container in containers:
            plan.container = container
            plan.key_base = 1
            case = self.probe_cases()[0].truncated(1)
            try:
                self._set_call_timeout()
                _styles.first_call(self.worker, plan, case.params0, case.grads[0])
            except TargetFailure as f:
                if f.id in FATAL:
                    break
                continue
            chosen = container
            break
        plan.container = chosen or containers[0]
        if chosen is None:
            plan.key_base = 1
        if len(containers) > 1 and chosen is not None and chosen != containers[0]:
            self.notes.append(
                f"{plan.param_names or plan.grad_names}: passed as {_CONTAINER_WORDS.get(chosen, chosen)} "
                f"(the target did not accept {_CONTAINER_WORDS.get(containers[0], containers[0])})"
            )
        if plan.key_base != 1:
            self.layer_base = plan.key_base
            plan.key_base = 1
            self.notes.append(
                f"layers numbered from {self.layer_base} (W{self.layer_base}, b{self.layer_base}, ...)"
            )

    def _method_target(self, info: TargetInfo) -> TargetInfo:
        """A ``Class.method`` target: describe the class (the audit constructs it and calls the method)."""
        spec_name = self.spec.name if self.spec is not None else getattr(self._object, "__qualname__", "")
        params = [p for p in info.params if not p.is_var]
        if info.kind != "function" or not params or params[0].name != "self" or spec_name.count(".") != 1:
            return info
        owner, method = spec_name.split(".")
        from ._wire import TARGET
        from .targets import info_from_plain

        b = self.worker.batch()
        i = b.describe(TARGET.attr("__globals__").item(owner))
        try:
            desc = b.run(self.timeout)[i]
            cls_info = info_from_plain(desc, info.spec)
        except (TargetFailure, ValueError) as e:
            raise AuditUsageError(
                f"{spec_name}: cannot find the class {owner!r} of the method ({e})"
            ) from None
        if cls_info.kind != "class":
            return info
        self._owner = owner
        return dataclasses.replace(cls_info, method=method, name=owner)

    def _renumber(self, tree: Any) -> Any:
        """``tree`` with its layer keys numbered like the target's (``W0`` for ``W1`` when it counts from 0)."""
        if self.layer_base == 1 or not isinstance(tree, Mapping):
            return tree
        from ._styles import user_key

        return {user_key(k, self.layer_base): v for k, v in tree.items()}

    def _steps_for_rule(self) -> None:
        """Audit past the rule's last change of form (RAdam's first rectified step), unless ``--steps`` was given."""
        if self.steps_given:
            return
        last = self.rule.phase_steps()
        if last + 2 > self.steps:
            self.steps = last + 2
            self.notes.append(
                f"{self.steps} steps per case: {self.rule_name}'s update changes form at step {last}"
            )

    def _bind_auto(self, info: TargetInfo, style: str, config_defaults: Mapping[str, Any] | None) -> None:
        """``--rule auto``: bind against the rule whose names fit the target best (identified later)."""
        best: tuple[int, int, type[Rule], Any] | None = None
        first_error: AuditUsageError | None = None
        for order, name in enumerate(AUTO_ORDER):
            cls = rules_mod.rule_class(name)
            try:
                hyper_in = _parse_hyper(cls, self.hyper_given)
                rules_mod.get(name, **{r: v for r, (_, v) in hyper_in.items()})
                binding = adapters.bind(info, style, cls, hyper_in, self.args, config_defaults, self.bind)
                rules_mod.get(name, **binding.ref_hyper)
            except (AuditUsageError, ValueError, TypeError) as e:
                if first_error is None:
                    first_error = e if isinstance(e, AuditUsageError) else AuditUsageError(f"--hyper: {e}")
                continue
            score = sum(c.role == "hyper" for c in binding.plan.calls) + len(binding.plan.config)
            if best is None or score > best[0]:
                best = (score, order, cls, (hyper_in, binding))
        if best is None:
            raise first_error or AuditUsageError(
                "--rule auto: the target's arguments fit no rule; name one with --rule"
            )
        self.rule_cls = best[2]
        self.rule_name = self.rule_cls.name
        self.hyper_in, self.binding = best[3]

    def _identify(self) -> bool:
        """``--rule auto``: which rule the probes show; switch the reference to it. False: none fits.

        :func:`optcheck.diagnose.identify` first (rules, conventions and single bugs). When it finds
        no rule that reproduces the target, every rule is fitted instead (its free hyperparameters
        from the target's trajectories, the values the target was given kept) and ranked by the
        fraction of entries it reproduces, so that a target with two bugs is still judged against
        the rule it implements; the report then says the identification is unsure and names the
        two best rules.
        """
        diag = _diagnose_module()
        results = [r for r in self.probe_results if r.failure is None and r.traj.steps]
        trajs = [r.traj for r in results]
        if not trajs:
            return False  # every probe failed: those failures are the report
        if diag is None or not hasattr(diag, "identify"):
            raise AuditUsageError("--rule auto needs optcheck.diagnose.identify; name the rule with --rule")
        plain = [dataclasses.replace(t, states=None) for t in trajs]
        ident = diag.identify(plain, budget=IDENTIFY_BUDGET)
        self.identification = ident
        if ident.rule is not None and ident.matched and not ident.bugs:
            rule = ident.rule
            message = ident.message()
            # the values the target was given are what it must use: identify() fits them freely
            given = adapters.passed_hyper(self.plan, self.info, type(rule))
            if self.binding.l2 is not None and "weight_decay" in rule.hyper:
                given["weight_decay"] = self.binding.l2[2]
            differ = {
                k: v
                for k, v in given.items()
                if k in rule.hyper and not adapters._same_value(rule.hyper[k], v)
            }
            if differ:
                try:
                    rule = rule.replace(**differ)
                except (ValueError, TypeError):
                    pass
                else:
                    told = ", ".join(
                        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in differ.items()
                    )
                    message += f"; judged with the values the target is given ({told})"
        else:
            self._ranked_trajs: dict[str, list[Trajectory]] = {}
            ranking = self._rank_rules(results)
            explained = False
            if ranking and ranking[0][0] < 1.0:
                ranking, explained = self._explained_first(ranking, diag)
            if not ranking or ranking[0][0] <= 0.0:
                self.rule_name = "auto"
                closest = (
                    ident.message()
                    .removeprefix("closest: ")
                    .removesuffix(", but it does not reproduce the target")
                )
                self.findings["differs-from-reference"] = Finding(
                    "differs-from-reference",
                    "error",
                    "--rule auto: no known rule reproduces this target"
                    + (f"; closest: {closest}" if ident.rule is not None else "")
                    + ". Nothing else is judged against a rule; audit with --rule NAME to compare with one.",
                    step=1,
                )
                for fid in (*RULE_BOUND_INVARIANTS, *ROLE_BOUND_INVARIANTS):
                    self.findings.pop(fid, None)
                    self.provisional.pop(fid, None)
                return False
            score, rule = ranking[0]
            others = ", ".join(f"{r.name} ({sc:.0%} of the entries)" for sc, r in ranking[1:2])
            if score >= 1.0:
                specs = {sp.name: sp.default for sp in type(rule).hyper_specs()}
                shown = ", ".join(
                    f"{k}={v:g}" for k, v in rule.hyper.items() if isinstance(v, float) and v != specs.get(k)
                )
                message = f"identified {rule.name}({shown}): it reproduces the target"
            elif explained:
                message = (
                    f"{rule.name}: no rule reproduces the target as written, and a known convention or bug "
                    f"of {rule.name} does (see below; {rule.name} alone reproduces {score:.0%} of the "
                    f"entries{'; next: ' + others if others else ''})"
                )
            else:
                self._ident_unsure = rule.name
                message = (
                    f"unsure: no rule reproduces the target; the closest is {rule.name} ({score:.0%} of "
                    f"the entries reproduced){', then ' + others if others else ''}; judged against "
                    f"{rule.name} (name the rule with --rule to choose)"
                )
        self.rule = rule
        self.rule_cls = type(rule)
        self.rule_name = rule.name
        self._steps_for_rule()
        self.passed = adapters.passed_hyper(self.plan, self.info, self.rule_cls)
        self.state_map = None
        self.ref_variant = None
        self.notes.append(f"--rule auto: {message}")
        self.convention_findings.append(Finding("rule-identified", "info", f"--rule auto: {message}"))
        for fid in list(self.findings):
            if fid not in ("nondeterministic",):
                self.findings.pop(fid)
        self.provisional.clear()
        self.explanation = None
        return True

    def _rank_rules(self, results: Sequence[CaseResult]) -> list[tuple[float, Rule]]:
        """Every rule of ``AUTO_ORDER`` fitted to the probes, best first: (fraction reproduced, rule).

        The target's states count as well as its parameters, each rule reading them under its own
        names (``v`` is Adam's second moment beside ``m``, SGD's momentum buffer alone).
        """
        from ._infer import fit_free, fittable

        raw = [
            [{n: v for n, v in o.states.items() if n not in self.unused_states} for o in r.outputs]
            for r in results
        ]
        arrays = sorted(
            {n for steps in raw for st in steps for n, v in st.items() if not isinstance(v, float)}
        )

        out: list[tuple[float, tuple[int, int, int, int], float, Rule]] = []
        for order, name in enumerate(AUTO_ORDER):
            cls = rules_mod.rule_class(name)
            passed = adapters.passed_hyper(self.plan, self.info, cls)
            if self.binding.l2 is not None:
                if "weight_decay" not in {s.name for s in cls.hyper_specs()}:
                    continue
                passed["weight_decay"] = self.binding.l2[2]
            try:
                start = cls(**{k: v for k, v in passed.items() if k in {s.name for s in cls.hyper_specs()}})
            except (ValueError, TypeError):
                continue
            free = [s.name for s in cls.hyper_specs() if s.name not in passed and fittable(start, s.name)]
            smap = adapters.map_states(arrays, start) if arrays and start.array_keys() else {}
            trajs = []
            for r, steps in zip(results, raw, strict=True):
                states = [{key: st[user] for user, key in smap.items() if user in st} for st in steps]
                trajs.append(dataclasses.replace(r.traj, rule=start, states=states if smap else None))
            fit = fit_free(start, free, trajs, self._overrides_rule, 60)
            # evidence beyond the numbers, for ties: as many states as the rule keeps, and the
            # hyperparameter names the target uses that the rule has (alpha, beta1, momentum, rho)
            mismatch = abs(len(arrays) - len(start.array_keys())) if arrays else 0
            named = sum(1 for k in passed if k not in ("lr", "eps", "weight_decay"))
            called = 0 if name in self._named_rules() else 1
            out.append((fit.score, (mismatch, called, -named, order), fit.worst, fit.rule))
            self._ranked_trajs[name] = [dataclasses.replace(t, rule=fit.rule) for t in trajs]
        # equal fractions (a bug that spoils every entry): the evidence decides, then the commoner rule
        out.sort(key=lambda x: (-round(x[0], 2), x[1], -x[2]))
        return [(sc, r) for sc, _, _, r in out]

    def _explained_first(
        self, ranking: list[tuple[float, Rule]], diag: Any
    ) -> tuple[list[tuple[float, Rule]], bool]:
        """The ranking with the first of its three best rules whose known bugs explain the target moved first.

        Two rules can reproduce equally few entries of a buggy target; the one a catalog bug of
        which reproduces it is the rule the target meant to implement.
        """
        named = self._named_rules()
        order = [i for i, (_, r) in enumerate(ranking) if r.name in named]
        order += [i for i in range(min(3, len(ranking))) if i not in order]
        for i in order:
            rule = ranking[i][1]
            trajs = self._ranked_trajs.get(rule.name)
            if not trajs:
                continue
            try:
                expl = _run_explain(diag, trajs)
            except Exception:
                continue
            if _diagnoses(expl) or list(getattr(expl, "conventions", ()) or ()):
                return [ranking[i], *ranking[:i], *ranking[i + 1 :]], True
        return ranking, False

    def _named_rules(self) -> list[str]:
        """The rules the target's own name names (``update_variables_Adam``, ``class RMSProp``, ``..._momentum``)."""
        text = (self.info.name + " " + self.info.method).lower()
        found = [r for r in sorted(AUTO_ORDER, key=len, reverse=True) if r in text]
        found = [r for r in found if not any(r != o and r in o for o in found)]  # nadam, not adam too
        for word, rule in (
            ("momentum", "sgd"),
            ("nesterov", "sgd"),
            ("heavyball", "sgd"),
            ("rms", "rmsprop"),
        ):
            if word in text and rule not in found:
                found.append(rule)
        return found

    def _overrides_rule(self, rule: Rule, params0: Any) -> dict[Path, Rule]:
        """The course-L2 parameter groups for ``rule``: no decay on the biases."""
        if self.binding.l2 is None or not isinstance(params0, Mapping):
            return {}
        no_decay = rule.replace(weight_decay=0.0)
        return {path: no_decay for path, _ in flatten(params0) if not path[-1].startswith("W")}

    def _probe_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return rng.normal(size=(4, 3)), rng.normal(size=(4, 3))

    def reference_for(self, params0: Any) -> tuple[Rule, dict[Path, Rule], str | None]:
        """The reference rule, its parameter-group overrides and compute dtype for one case."""
        base = self._overrides_for(params0)
        variant = self.ref_variant
        if variant is None:
            return self.rule, base, None
        from ..diagnose._mutants import realize

        rule, overrides = realize(variant, self.rule, base, params0)
        return rule, {**base, **overrides}, variant.compute_dtype

    def _overrides_for(self, params0: Any) -> dict[Path, Rule]:
        if self.binding.l2 is None or not isinstance(params0, Mapping):
            return {}
        no_decay = self.rule.replace(weight_decay=0.0)
        return {path: no_decay for path, _ in flatten(params0) if not naming.is_course_weight(path[-1])}

    # -- names for messages -----------------------------------------------------------------------

    def names(self) -> dict[str, str]:
        """The user's names for the roles (``{"params": "parameters", "exp_avg_sq": "S"}``)."""
        out = {"params": self.plan.param_names, "grads": self.plan.grad_names}
        for user, key in (self.state_map or {}).items():
            out[key] = self._state_label(user)
        return out

    def _state_label(self, user: str) -> str:
        if self.style == "config":
            return f"config[{user!r}]"
        if self.style == "functional":
            return "state" if user == "state" else f"state[{user!r}]"
        if self.style in ("object",):
            return f"opt.{user}"
        if self.style == "torch":
            return f"opt.state[p][{user!r}]"
        return user

    def where(self, what: str, path: Path, index: Sequence[int] | None = None) -> str:
        """``parameters['W1'][0, 2]`` / ``S['dW1']`` / ``grads['dW1']`` in the user's key form."""
        names = self.names()
        base = names.get(what, what)
        if self.style == "torch" and what == "params":
            text = f"params[{path[0]!r}]" if path else "params"
        elif self.plan.container in ("array", "vector") or not path:
            text = base
        elif self.plan.container in ("list", "tuple"):
            keys = [k for k, _ in flatten(self._probe_layout())]
            pos = keys.index(path) if path in keys else path[0]
            text = f"{base}[{pos}]"
        elif self.plan.container == "args":
            text = (
                path[0]
                if what == "params"
                else next(
                    (a for a, k in self.plan.arg_keys.items() if k == path[0] and a != k),
                    f"{base}[{path[0]!r}]",
                )
                if what == "grads"
                else f"{base}[{path[0]!r}]"
            )
        else:
            from ._styles import user_key

            prefix = ""
            if what == "grads":
                prefix = self.plan.grad_prefix
            elif what not in ("params",) and self.style == "dict":
                prefix = self.plan.state_prefix
            first = (prefix + user_key(path[0], self.plan.key_base),)
            text = path_str(base, first + tuple(path[1:]))
        if index:
            text += "[" + ", ".join(str(i) for i in index) + "]"
        return text

    # -- running one case --------------------------------------------------------------------------

    def _tick(self, what: str) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.t0 > 2.0 and now - self._last_progress > 0.2:
            self._last_progress = now
            self.progress(f"{what}: {self.cases_run} cases run, {now - self.t0:.1f} s")

    def _map_states(self, states: Mapping[str, Any], params0: Any) -> dict[str, Any]:
        """The target's states under the rule's names, only those with the structure of the params."""
        if self.state_map is None:
            arrays = [
                n for n, v in states.items() if not isinstance(v, float) and n not in self.unused_states
            ]
            if not arrays:
                return {}
            self.state_map = adapters.map_states(arrays, self.rule)
        out: dict[str, Any] = {}
        shapes = [tuple(np.shape(p)) for _, p in flatten(params0)]
        for user, key in self.state_map.items():
            tree = states.get(user)
            if tree is None or isinstance(tree, float):
                continue
            leaves = flatten(tree)
            if len(leaves) != len(shapes) or any(
                tuple(np.shape(v)) != s for (_, v), s in zip(leaves, shapes, strict=True)
            ):
                continue
            out[key] = tree
        return out

    def _set_call_timeout(self) -> bool:
        """Give the worker the time one call may take; True when ``--max-time`` cut it short.
        Raises :class:`BudgetExhausted` when no time is left."""
        left = self.deadline - time.monotonic()
        if left <= 0 or self.exhausted:
            self.exhausted = True
            raise BudgetExhausted()
        self.worker.call_timeout = min(self.timeout, left)
        return left < self.timeout

    def run_case(self, case: Case, index: int = 0) -> CaseResult:
        """Run the target over ``case`` and check it."""
        self.cases_run += 1
        self._tick("searching")
        outputs: list[StepOutput] = []
        failure: tuple[int, TargetFailure] | None = None
        session: sessions.Session | None = None
        try:
            for g in case.grads:
                cut = self._set_call_timeout()
                try:
                    if session is None and self.plan.style in _styles.STYLES:
                        session, out = _styles.first_call(self.worker, self.plan, case.params0, g)
                    elif session is None:
                        session, out = sessions.first_step_with_key_forms(
                            self.worker, self.plan, case.params0, g
                        )
                    else:
                        out = session.step(g)
                except TargetFailure as f:
                    if f.id == "timeout" and cut:
                        raise BudgetExhausted() from None
                    raise
                if out.returned:
                    self.returned = out.returned
                outputs.append(out)
        except TargetFailure as f:
            failure = (len(outputs) + 1, f)
        return self.judge(case, outputs, failure, index)

    def judge(
        self,
        case: Case,
        outputs: list[StepOutput],
        failure: tuple[int, TargetFailure] | None,
        index: int = 0,
    ) -> CaseResult:
        """Check what the target did on ``case`` against the current reference."""
        overrides = self._overrides_for(case.params0)
        mapped = [self._map_states(o.states, case.params0) for o in outputs]
        traj = Trajectory(
            rule=self.rule,
            params0=case.params0,
            grads=list(case.grads[: len(outputs)]),
            params=[o.params for o in outputs],
            states=mapped if any(mapped) else None,
            overrides=overrides,
            names=self.names(),
            error=None,
        )
        res = CaseResult(case, outputs, traj, failure, [])
        self._check(res, index)
        return res

    def _structure_findings(self, res: CaseResult) -> bool:
        """``shape-changed``/``dtype-changed``/``bad-return``; True when the outputs are unusable."""
        params0 = res.case.params0
        ref: dict[Path, Any] = dict(flatten(params0))
        for k, out in enumerate(res.outputs):
            got: dict[Path, Any] = (
                dict(flatten(out.params)) if isinstance(params0, Mapping) else {(): out.params}
            )
            for path, p0 in ref.items():
                p1 = got.get(path)
                if p1 is None:
                    continue
                if tuple(p1.shape) != tuple(p0.shape):
                    res.findings.append(
                        Finding(
                            "shape-changed",
                            "error",
                            f"{self.where('params', path)} has shape {tuple(p1.shape)} after step {k + 1}; it was "
                            f"{tuple(p0.shape)}. "
                            + (
                                "Two arrays of different shapes were broadcast to a larger one (for example "
                                "(n, 1) + (n,) gives (n, n)); keep every term in the parameter's shape."
                                if p1.size > p0.size
                                else "Return every parameter in the shape it was given."
                            ),
                            where=self.where("params", path),
                            step=k + 1,
                            expected=f"shape {tuple(p0.shape)}",
                            got=f"shape {tuple(p1.shape)}",
                        )
                    )
                    return True
                if p1.dtype != p0.dtype:
                    res.findings.append(
                        Finding(
                            "dtype-changed",
                            "error",
                            f"{self.where('params', path)} came back as {p1.dtype} after step {k + 1}; it was given as "
                            f"{p0.dtype}. Keep the parameter's dtype (cast the result back, or compute in it).",
                            where=self.where("params", path),
                            step=k + 1,
                            expected=str(p0.dtype),
                            got=str(p1.dtype),
                        )
                    )
                    return True
        return False

    def _check(self, res: CaseResult, index: int) -> None:
        """Fill ``res.findings``: failures, structure, invariants, state updates, differential test."""
        case = res.case
        if res.failure is not None:
            step, f = res.failure
            action = {"timeout": "hung", "crashed": "crashed", "exited": "exited"}.get(f.id, "failed")
            res.findings.append(
                Finding(
                    f.id,
                    "error",
                    f"the target {f.detail} at step {step}"
                    if f.id != "bad-return"
                    else f"at step {step}, the target {f.detail}",
                    step=step,
                    detail=f.traceback or None,
                    got=action,
                )
            )
        for k, out in enumerate(res.outputs):
            for name in out.mutated:
                res.findings.append(
                    Finding(
                        "input-mutated",
                        "error",
                        f"the target changed {name} in place at step {k + 1}; gradients are inputs and must not "
                        "be modified (compute g = grad + ... into a new array instead of grad += ...)",
                        where=name,
                        step=k + 1,
                    )
                )
                break
        if self._structure_findings(res):
            return
        self._invariants(res)
        if self.none:
            return
        self._state_updates(res)
        if res.traj.steps == 0:
            return
        ref_rule, ref_overrides, compute_dtype = self.reference_for(case.params0)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            cmp = compare_trajectory(
                res.traj,
                ref_rule,
                ref_overrides,
                index=index,
                compute_dtype=compute_dtype,
                ignore_state=set(self.rule.array_keys()),
            )
        if (
            not cmp.matched
            and cmp.divergence is not None
            and not self._rounding_only(res.traj, cmp.divergence)
        ):
            d = cmp.divergence
            res.divergence = d
            where = self.where(d.what, d.path, d.index)
            got = want = None
            if d.target is not None and d.reference is not None:
                got, want, rel = show_pair(d.target, d.reference)
                msg = f"{where} is {got} after step {d.step}; {self._ref_text()} gives {want}"
                msg += f" (relative difference {rel})" if rel else ""
            else:
                msg = d.message(self.names(), self._ref_text())
            res.findings.append(
                Finding(
                    "differs-from-reference",
                    "error",
                    msg,
                    where=where,
                    step=d.step,
                    expected=want,
                    got=got,
                )
            )
        # invariants whose bound comes from the reference only count when the target also disagrees
        if not any(f.id == "differs-from-reference" for f in res.findings):
            res.findings[:] = [f for f in res.findings if f.id not in RULE_BOUND_INVARIANTS]

    def _rounding_only(self, traj: Trajectory, d: Any) -> bool:
        """Whether a divergence is rounding: tiny next to what the entry's array held during the trajectory.

        ``optcheck._compare`` measures a difference against the largest entry of the array at that
        step; after a cancellation (``p`` near 0 after ``p - lr*u`` with ``p`` and ``lr*u`` large)
        that hides how large the numbers that were subtracted were. Here the scale is the largest
        value the array held at any step so far, in the target or the reference.
        """
        if _negligible(d):
            return True
        if d.what != "params" or d.target is None or d.reference is None:
            return False
        if not (math.isfinite(d.target) and math.isfinite(d.reference)):
            return False
        rule, overrides, _ = self.reference_for(traj.params0)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                ref = replay(rule, traj.params0, traj.grads[: d.step], None, overrides)
        except Exception:
            return False
        history = [traj.params0, *traj.params[: d.step], *[p for p, _ in ref]]
        scale = 0.0
        for tree in history:
            leaf = dict(flatten(tree)).get(d.path)
            if leaf is None:
                continue
            a = np.abs(np.asarray(leaf, dtype=np.float64))
            a = a[np.isfinite(a)]
            if a.size:
                scale = max(scale, float(a.max()))
        return bool(abs(d.target - d.reference) <= _rtol(traj.params[0]) * scale)

    def _ref_text(self) -> str:
        if self.ref_variant is None:
            return (
                f"torch's {self.rule_name}"
                if self.rule_name not in ("lion",)
                else f"the reference {self.rule_name}"
            )
        return "the reference (under the convention " + ", ".join(self.conventions) + ")"

    def _invariants(self, res: CaseResult) -> None:
        from ..invariants import check_update

        traj = res.traj
        if not res.outputs:
            return
        state_prev: dict[str, Any] = {}
        if not self.none:  # with --rule none, no rule's state is assumed
            state_prev = {k: v for k, v in self.rule.init(traj.params0).items() if k != "step"}
        params_prev = traj.params0
        names = self.names()
        prefix = {}
        if self.style == "dict":
            prefix = {"grads": self.plan.grad_prefix}
            for key in (self.state_map or {}).values():
                prefix[key] = self.plan.state_prefix
        seen: set[str] = set()
        for k, out in enumerate(res.outputs):
            new_state = traj.states[k] if traj.states is not None else {}
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                try:
                    viols = check_update(
                        self.rule,
                        params_prev,
                        traj.grads[k],
                        {kk: v for kk, v in state_prev.items() if kk in new_state},
                        out.params,
                        new_state,
                        names=names,
                        step=k + 1,
                        key_prefix=prefix,
                        skip=(
                            "input-mutated",
                            "shape-changed",
                            "dtype-changed",
                            "differs-from-reference",
                            "step-not-incremented",
                            *(RULE_DEPENDENT if self.none else ()),
                        ),
                        overrides=traj.overrides or None,
                    )
                except (ValueError, TypeError):
                    viols = []
            for v in viols:
                if v.id in seen:
                    continue
                if v.id == "non-finite" and (
                    v.became is False or (not self.none and self._reference_nonfinite(traj, k))
                ):
                    continue
                seen.add(v.id)
                res.findings.append(
                    Finding(
                        v.id,
                        "error",
                        v.message,
                        where=v.where,
                        step=v.step if v.step is not None else k + 1,
                        fix=None if self.none else (v.hint or None),
                        got=None if v.value is None else f"{v.value:.6g}",
                    )
                )
            params_prev = out.params
            state_prev = {**state_prev, **new_state}

    def _replay_states(self, traj: Trajectory) -> list[Any]:
        """The reference's states after each step of ``traj`` (in its compute dtype); ``[]`` if it fails."""
        return [st for _, st in self._replay(traj)]

    def _replay(self, traj: Trajectory) -> list[tuple[Any, dict[str, Any]]]:
        """The reference (convention and compute dtype included) replayed over ``traj``."""
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                rule, overrides, dtype = self.reference_for(traj.params0)
                params0, grads = traj.params0, traj.grads
                if dtype is not None:
                    params0 = map_tree(lambda a: np.asarray(a).astype(dtype), params0)
                    grads = [map_tree(lambda a: np.asarray(a).astype(dtype), g) for g in grads]
                return replay(rule, params0, grads, None, overrides)
        except Exception:
            return []

    def _reference_nonfinite(self, traj: Trajectory, k: int) -> bool:
        """Whether the reference itself is non-finite after step ``k + 1`` (then the target is not to blame)."""
        ref = self._replay(traj)
        if k >= len(ref):
            return True
        params, state = ref[k]
        trees = [params, *(state[key] for key in self.rule.array_keys() if key in state)]
        return any(not np.all(np.isfinite(np.asarray(leaf))) for tree in trees for _, leaf in flatten(tree))

    def _state_updates(self, res: CaseResult) -> None:
        """``state-not-updated``: a state the rule changes that the target left as it was."""
        if not self.rule.array_keys() or not res.outputs:
            return
        if self.style == "functional" and all(not o.states for o in res.outputs):
            res.findings.append(
                Finding(
                    "state-not-updated",
                    "error",
                    f"the target returned no state (None) although {self.rule_name} keeps "
                    f"{list(self.rule.array_keys())} between calls; return (param, state) and use that state",
                    where="state",
                    step=1,
                )
            )
            return
        traj = res.traj
        if traj.states is None:
            return
        ref: list[Any] | None = None
        init = self.rule.init(traj.params0)
        for key in traj.states[0] if traj.states else {}:
            for k in range(len(traj.states)):
                if k == 0 and self.style != "dict":
                    continue
                before = init[key] if k == 0 else traj.states[k - 1].get(key)
                after = traj.states[k].get(key)
                if before is None or after is None:
                    continue
                leaves = [
                    (np.asarray(a), np.asarray(b))
                    for (_, a), (_, b) in zip(flatten(before), flatten(after), strict=False)
                ]
                if not all(np.isfinite(a).all() and np.isfinite(b).all() for a, b in leaves):
                    continue
                if not all(np.array_equal(a, b) for a, b in leaves):
                    continue
                if not any(np.any(np.asarray(g) != 0) for _, g in flatten(traj.grads[k])):
                    continue
                if ref is None:
                    ref = self._replay_states(traj)
                if k >= len(ref):
                    continue
                # the reference's step from the target's own previous parameters and state: would it change?
                if not self._reference_changes(traj, ref, k, key, before):
                    continue
                label = self.names().get(key, key)
                bug = _catalog_entry("state-not-updated")
                res.findings.append(
                    Finding(
                        "state-not-updated",
                        "error",
                        f"{label} did not change at step {k + 1} although {self.rule_name}'s {key} does: the new "
                        f"value never reaches the state the next call receives (a local variable rebound instead "
                        f"of {label}[key] = ..., or the updated {label} not returned)",
                        where=label,
                        step=k + 1,
                        wrong=getattr(bug, "wrong", None),
                        fix=getattr(bug, "fix", None),
                    )
                )
                return

    def _reference_changes(self, traj: Trajectory, ref: list[Any], k: int, key: str, before: Any) -> bool:
        """Whether the reference, stepped from the target's parameters and ``key`` state before step
        ``k + 1``, changes that state (so an unchanged state is a bug, not rounding)."""
        from .._trajectory import step_tree

        rule, overrides, _ = self.reference_for(traj.params0)
        state = dict(self.rule.init(traj.params0)) if k == 0 else dict(ref[k - 1])
        state[key] = before
        params = traj.params0 if k == 0 else traj.params[k - 1]
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                _, new = step_tree(rule, params, traj.grads[k], state, overrides)
        except Exception:
            return False
        return any(
            not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
            for (_, a), (_, b) in zip(flatten(before), flatten(new[key]), strict=False)
        )

    # -- the phases ----------------------------------------------------------------------------------

    def _arg_param_keys(self) -> list[str]:
        return [a for a, k in self.plan.arg_keys.items() if a == k]

    def _probe_layout(self) -> Any:
        """The shapes of the probes' parameters: one array, the course dict, or one array per argument."""
        if self.plan.container == "array":
            return (4, 3)
        if self.plan.container == "vector":
            return (6,)
        if self.plan.container == "args":
            keys = self._arg_param_keys()
            return {k: (4, 3) if i == 0 else (4, 1) for i, k in enumerate(keys)}
        if self.plan.container == "attrs":
            return {"W": (4, 3), "b": (4, 1)}
        return {"W1": (4, 3), "b1": (4, 1), "W2": (2, 4), "b2": (2, 1)}

    def probe_cases(self) -> list[Case]:
        """Three fixed cases from the seed: ordinary values, zero gradients, values where epsilon matters."""
        rng = np.random.default_rng(self.seed)
        cases = []
        for i in range(3):
            shapes = self._probe_layout()

            def draw(scale: float, shapes: Any = shapes) -> Any:
                if isinstance(shapes, tuple):
                    return rng.normal(size=shapes) * scale
                return {k: rng.normal(size=s) * scale for k, s in shapes.items()}

            params0 = draw(1.0)
            if i == 0:
                grads = [draw(1.0) for _ in range(self.steps)]
            elif i == 1:
                grads = [draw(0.5) for _ in range(self.steps)]
                for g in grads:
                    for _, leaf in flatten(g):
                        leaf.reshape(-1)[: max(1, leaf.size // 3)] = 0.0
            else:
                grads = [draw(1e-4) for _ in range(self.steps)]
            cases.append(
                Case(
                    self._renumber(params0),
                    [self._renumber(g) for g in grads],
                    label=("ordinary values", "zero gradients", "small gradients")[i],
                )
            )
        return cases

    def _record(self, res: CaseResult, shrunk: bool) -> None:
        for f in res.findings:
            if f.id in self.findings:
                continue
            step = f.step or len(res.case.grads)
            case = res.case.truncated(max(1, step))
            if shrunk:
                f.example = self.example(case)
                f.shrunk = True
                self.findings[f.id] = f
                self.provisional.pop(f.id, None)
                self._cases[f.id] = case
            elif f.id not in self.provisional:
                f.example = self.example(case)
                self.provisional[f.id] = (f, case)

    def example(self, case: Case) -> dict[str, Any]:
        """The inputs of ``case`` in the user's names and key forms."""
        gp = self.plan.grad_prefix if self.plan.container == "dict" else ""
        from ._styles import user_key

        def keyed(tree: Any, prefix: str) -> Any:
            if isinstance(tree, Mapping):
                if self.plan.container in ("list", "tuple"):
                    return [v for v in tree.values()]
                return {prefix + user_key(k, self.plan.key_base): v for k, v in tree.items()}
            return tree

        return {
            self.plan.param_names: keyed(case.params0, ""),
            "grads": [keyed(g, gp) for g in case.grads],
        }

    def run(self) -> AuditReport:
        """The whole audit (what it covered, when ``--max-time`` runs out first)."""
        try:
            with hypothesis_storage():
                self._run()
        finally:
            self.worker.close()
        return self.report()

    def _exhaust(self) -> None:
        self.exhausted = True
        with contextlib.suppress(BudgetExhausted):
            self._promote()
        self.findings["budget-exhausted"] = Finding(
            "budget-exhausted",
            "error",
            f"the audit stopped after {self.max_time:g} s (--max-time) with {self.cases_run} cases run; the findings "
            "below are what it covered. The audit is incomplete: give a larger --max-time, or fewer --examples "
            "or --steps",
        )

    def _run(self) -> None:
        self.setup()
        if self.config_failure is not None:
            f = self.config_failure
            w, dw = self._probe_arrays()
            self.findings[f.id] = Finding(
                f.id,
                "error",
                f"called with config=None, the target {f.detail}",
                step=1,
                example=self.example(Case(w, [dw])),
                detail=f.traceback or None,
            )
            self._cases[f.id] = Case(w, [dw])
            if f.id in FATAL:
                return
        try:
            go = self._probes()
            if go and self.auto:
                go = self._identify() and self._probes()
            if go:
                self._search()
            else:
                self._promote()
            errors = any(f.severity == "error" for f in self.findings.values()) or self.provisional
            if go and self.style == "torch" and not self._fatal() and not errors:
                from .torch_options import audit_torch_options

                for option in audit_torch_options(self):
                    self.findings.setdefault(option.id, Finding(**dataclasses.asdict(option)))
        except BudgetExhausted:
            self._exhaust()
        try:
            self._diagnose()
        except BudgetExhausted:
            if "budget-exhausted" not in self.findings:
                self._exhaust()
        self._unexplained_roles()

    def _find_unused_states(self, results: Sequence[CaseResult]) -> bool:
        """States the target never changes (still all zero after every probe step): they say nothing.

        Course code often hands ``V`` and ``S`` to an RMSprop that only uses ``S``. Such a state is
        left out of the state mapping and the invariants; True when one was found.
        """
        names: dict[str, bool] = {}
        for r in results:
            for out in r.outputs:
                for name, tree in out.states.items():
                    if isinstance(tree, float):
                        continue
                    zero = all(not np.any(np.asarray(v)) for _, v in flatten(tree))
                    names[name] = names.get(name, True) and zero
        moved = any(np.any(np.asarray(v)) for r in results for g in r.case.grads for _, v in flatten(g))
        unused = [n for n, zero in names.items() if zero and moved and n not in self.unused_states]
        if not unused or len(unused) == len(names):
            return False
        self.unused_states.extend(unused)
        self.state_map = None
        for n in unused:
            self.notes.append(f"{n}: never changed by {self.info.name} (all zeros after every step); ignored")
        return True

    def _free_hyper(self) -> list[str]:
        """The rule's hyperparameters the target takes no argument for and the user did not give."""
        from ._infer import fittable

        bound = set(self.passed) if self.passed is not None else set(self.binding.bound) | set(self.hyper_in)
        if self.binding.l2 is not None:
            bound.add("weight_decay")
        return [
            s.name for s in self.rule_cls.hyper_specs() if s.name not in bound and fittable(self.rule, s.name)
        ]

    def _fit_hard_coded(self, results: Sequence[CaseResult]) -> bool:
        """Fit the free hyperparameters to the probes when the reference disagrees; True if the rule changed."""
        from ._infer import fit_free

        free = self._free_hyper()
        if self.auto and self.passed is None:
            return False  # the rule is not known yet: identification fits it
        if not free:
            return False
        if not any(r.divergence is not None for r in results) and not self.auto:
            return False
        trajs = [r.traj for r in results if r.traj.steps]
        if not trajs:
            return False

        fit = fit_free(self.rule, free, trajs, self._overrides_rule)
        self.fit = fit
        changed = bool(fit.changed)
        self.rule = fit.rule
        defaults = {s.name: s.default for s in self.rule_cls.hyper_specs()}
        assumed = {k: self.rule.hyper[k] for k in free if self.rule.hyper[k] != defaults.get(k)}
        if not assumed:
            return changed
        where = self.info.name
        written = _constants_in_source(self.info.file, self.info.method or self.info.name)
        parts = []
        for k, v in assumed.items():
            hit = next((w for w in written if math.isclose(w[1], float(v), rel_tol=1e-9)), None)
            if hit is not None:  # the user's own name for it, from the target's source (read, not run)
                parts.append(f"{hit[0]} = {v:g} (line {hit[2]}; {self.rule_name}'s {_hyper_symbol(k)})")
            else:
                parts.append(f"{_hyper_symbol(k)} = {v:g}")
        values = ", ".join(parts)
        self.notes.append(
            f"assumed {values} (hard-coded in {where}: it takes no argument for "
            f"{'it' if len(assumed) == 1 else 'them'}; fitted to its own trajectories, "
            f"{fit.evaluations} evaluations)"
        )
        self.convention_findings.append(
            Finding("hyperparameter-inferred", "info", f"assumed {values} (hard-coded in {where})")
        )
        return changed

    def _fatal(self) -> bool:
        return any(i in FATAL for i in [*self.findings, *self.provisional])

    def _probes(self) -> bool:
        """Run the probe cases; return whether the search should run."""
        results = []
        for i, case in enumerate(self.probe_cases()):
            res = self.run_case(case, i)
            results.append(res)
            if res.failure is not None and res.failure[1].id in FATAL:
                for r in results:
                    self._record(r, shrunk=False)
                self._promote()
                return False
        rejudge = self._find_unused_states(results)
        if self._fit_hard_coded(results) or rejudge:
            results = [self.judge(r.case, r.outputs, r.failure, i) for i, r in enumerate(results)]
        for res in results:
            self._record(res, shrunk=False)
        self.probe_results = results
        first = results[0]
        if first.failure is None and first.outputs:
            again = self.run_case(first.case, 0)
            if again.failure is None and not _same_outputs(first.outputs, again.outputs):
                step, where = _first_difference(first.outputs, again.outputs)
                f = Finding(
                    "nondeterministic",
                    "error",
                    f"the same inputs gave different outputs on two runs (first at step {step}, {where}): the "
                    "target keeps hidden state between calls (a global or class variable) or uses randomness",
                    where=where,
                    step=step,
                    example=self.example(first.case.truncated(step)),
                )
                self.findings[f.id] = f
                self._cases[f.id] = first.case.truncated(step)
        differing = [r for r in results if r.divergence is not None and r.failure is None]
        if differing:
            self._explain([r for r in results if r.failure is None], probes=True)
        return True

    def _search(self) -> None:
        """Hypothesis: find and shrink an example of every error finding.

        Each round is one ``hypothesis.find`` for a case showing an error finding not shrunk yet:
        the generation phase runs up to ``--examples`` cases, shrinking stops after
        ``SHRINK_CALLS`` runs of the target, and there are at most ``MAX_ROUNDS`` rounds (findings
        not shrunk by then keep the first example that showed them). Every budget is a count, so
        the same seed gives the same report on any machine.
        """
        from hypothesis import HealthCheck, Phase, find, settings
        from hypothesis.errors import Flaky, NoSuchExample

        strategy = self.case_strategy()
        done: set[str] = set(self.findings)
        for rnd in range(1, MAX_ROUNDS + 1):
            if self._fatal():
                break
            condition = _Round(self, frozenset(done))
            try:
                find(
                    strategy,
                    condition,
                    settings=settings(
                        max_examples=self.examples,
                        database=None,
                        deadline=None,
                        suppress_health_check=list(HealthCheck),
                        phases=[Phase.generate, Phase.shrink],
                    ),
                    random=random.Random(self.seed * 1000 + rnd),
                )
            except NoSuchExample:
                break
            except Flaky:  # the condition answers from its cache, so only the target can be flaky
                self._nondeterministic_from_search()
                break
            res = condition.last
            if res is None:
                break
            if res.failure is None or res.failure[1].id not in FATAL:
                res = self._round_values(res, res.error_ids() - done)
                res = self._trim_leading_steps(res, res.error_ids() - done)
            self._record(res, shrunk=True)
            if res.failure is not None and res.failure[1].id in FATAL:
                break
            new_done = res.error_ids() - done
            if not new_done:
                break
            done |= new_done
        self._promote()

    def _round_values(self, res: CaseResult, ids: set[str]) -> CaseResult:
        """Replace odd values of a shrunk case by readable ones where the findings ``ids`` still show.

        Hypothesis shrinks toward small positive values, so a case that needs a negative weight
        can end up with ``W = 4e-302`` that turns negative one step later; ``W = -1`` shows it at
        once. Tried in order: 0, 1, -1, 2, -2, then the power of ten of the value's sign and
        magnitude (``8.3e-162`` -> ``1e-161``), which keeps a finding that needs a tiny value.
        At most ``ROUND_VALUE_CALLS`` runs of the target.
        """
        if not ids:
            return res
        budget = ROUND_VALUE_CALLS
        best = res
        trees = [best.case.params0, *best.case.grads]
        for t_index in range(len(trees)):
            for path, leaf in flatten(trees[t_index]):
                flat = np.asarray(leaf).reshape(-1)
                for i in range(flat.size):
                    value = float(flat[i])
                    if _readable(value) or not math.isfinite(value):
                        continue
                    for cand in _readable_candidates(value):
                        if budget <= 0:
                            return best
                        budget -= 1
                        trial_trees = [
                            _replace_entry(t, path, i, cand) if k == t_index else t
                            for k, t in enumerate([best.case.params0, *best.case.grads])
                        ]
                        case = Case(trial_trees[0], trial_trees[1:], best.case.label)
                        trial = self.run_case(case, 100 + self.cases_run)
                        if ids <= trial.error_ids():
                            best = trial
                            break
        return best

    def _trim_leading_steps(self, res: CaseResult, ids: set[str]) -> CaseResult:
        """Drop the steps before a shrunk finding when it still shows without them (a shorter example).

        Hypothesis puts the simplest values (zero gradients) first, so a minimal case often shows its
        finding at step 3 after two steps that do nothing; starting later shows it at step 1.
        """
        if not ids:
            return res
        first = min((f.step or 1) for f in res.findings if f.id in ids)
        for skip in range(first - 1, 0, -1):
            case = Case(res.case.params0, res.case.grads[skip:], res.case.label)
            trial = self.run_case(case, 100 + self.cases_run)
            if ids <= trial.error_ids():
                return trial
        return res

    def _nondeterministic_from_search(self) -> None:
        if "nondeterministic" not in self.findings:
            self.findings["nondeterministic"] = Finding(
                "nondeterministic",
                "error",
                "the target gave different results for the same inputs while the search replayed them: it keeps "
                "hidden state between calls or uses randomness",
            )

    def _promote(self) -> None:
        for fid, (f, case) in list(self.provisional.items()):
            if fid not in self.findings:
                self.findings[fid] = f
                self._cases[fid] = case
        self.provisional.clear()

    def case_strategy(self) -> Any:
        """The Hypothesis strategy of cases for this target's style."""
        from hypothesis import strategies as st
        from hypothesis.extra import numpy as hnp

        from .. import strategies as ost

        steps = self.steps
        if self.plan.container in ("array", "vector"):
            dims = 1 if self.plan.container == "vector" else 2
            shapes = hnp.array_shapes(min_dims=1, max_dims=dims, min_side=1, max_side=3)
            params = st.one_of(ost.params(shapes=shapes), ost.params(shapes=shapes, adversarial=True))
        elif self.plan.container in ("args", "attrs"):
            one = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3)
            keys = self._arg_param_keys() if self.plan.container == "args" else ["W", "b"]
            layout = st.fixed_dictionaries({k: one for k in keys})
            params = st.one_of(ost.params(shapes=layout), ost.params(shapes=layout, adversarial=True))
        else:
            params = st.one_of(
                ost.params(style="dict", max_side=3), ost.params(style="dict", max_side=3, adversarial=True)
            )

        params = params.map(self._renumber)

        def with_grads(p: Any) -> Any:
            g = st.one_of(ost.grads_like(p), ost.grads_like(p, adversarial=True))
            return st.lists(g, min_size=steps, max_size=steps).map(lambda gs: Case(p, list(gs)))

        return params.flatmap(with_grads)

    # -- diagnosis ---------------------------------------------------------------------------------

    def _explain(self, results: Sequence[CaseResult], probes: bool) -> None:
        """Ask diagnosis why the target differs; a convention becomes the new reference."""
        diag = _diagnose_module()
        trajs = [r.traj for r in results if r.traj.steps]
        if diag is None or not trajs:
            return
        try:
            explanation = _run_explain(diag, trajs)
        except Exception as e:  # diagnosis must never take the audit down
            self.notes.append(f"diagnosis failed: {type(e).__name__}: {e}")
            return
        self.explanation = explanation
        convs = list(getattr(explanation, "conventions", ()) or ())
        if convs and not _diagnoses(explanation):
            self.ref_variant = _convention_variant(convs, self.rule)
            for conv in convs:
                if conv.id in self.conventions:
                    continue
                self.conventions.append(conv.id)
                self.convention_findings.append(Finding(conv.id, "info", conv.message))
            # re-check the probes against the convention: what disagreed because of it is gone
            if probes and self.ref_variant is not None:
                for fid in ("differs-from-reference", *RULE_BOUND_INVARIANTS):
                    self.provisional.pop(fid, None)
                    self.findings.pop(fid, None)
                for r in results:
                    r2 = self.run_case(r.case, 0)
                    self._record(r2, shrunk=False)

    def _diagnose(self) -> None:
        """Replace ``differs-from-reference`` with the diagnoses that explain it."""
        diff = self.findings.get("differs-from-reference")
        if diff is None or self.none:
            return
        diag = _diagnose_module()
        if diag is None:
            return
        explanation = self.explanation
        if explanation is None or (self.ref_variant is not None and not _diagnoses(explanation)):
            # none yet, or the probes' convention does not explain what the search found since
            results = [r for r in self.probe_results if r.failure is None and r.traj.steps]
            results += [r for r in self.failing if r.failure is None and r.traj.steps]
            if not results:
                return
            try:
                explanation = _run_explain(diag, [r.traj for r in results])
            except Exception as e:
                self.notes.append(f"diagnosis failed: {type(e).__name__}: {e}")
                return
            self.explanation = explanation
        found = _diagnoses(explanation)
        if not found:
            self._adopt_conventions(explanation)
            return
        for d in found:
            ev = d.evidence.text() if getattr(d, "evidence", None) is not None else ""
            partners = f" (together with {', '.join(d.together_with)})" if d.together_with else ""
            hyper = ""
            if d.hyper:
                hyper = " Inferred: " + ", ".join(f"{k}={v!r}" for k, v in d.hyper.items()) + "."
            f = Finding(
                d.id,
                "error",
                d.message,
                where=diff.where,
                step=diff.step,
                example=diff.example,
                shrunk=diff.shrunk,
                expected=diff.expected,
                got=diff.got,
                fix=d.fix,
                summary=d.summary + self._which_form(d) + hyper,
                evidence=(
                    f"a mutant of {self.rule_name} with this bug{partners} {ev}; first difference from the "
                    f"reference: {diff.message}"
                ),
                wrong=d.wrong,
            )
            if d.id not in self.findings:
                self.findings[d.id] = f
                if "differs-from-reference" in self._cases:
                    self._cases[d.id] = self._cases["differs-from-reference"]
        self.findings.pop("differs-from-reference", None)
        ids = [getattr(d, "id", "") for d in found]
        if self._ident_unsure:
            # the bugs diagnosis named settle the identification: the target is that rule, with them
            settled = f"--rule auto: {self._ident_unsure}, with the bugs below (no rule reproduces the target as written)"
            self.notes[:] = [settled if n.startswith("--rule auto: unsure") else n for n in self.notes]
            for f in self.convention_findings:
                if f.id == "rule-identified":
                    f.message = settled
            self._ident_unsure = ""
        for fid in (
            "non-finite",
            "negative-second-moment",
            "sqrt-of-negative",
            "update-too-large",
            "update-without-gradient",
        ):
            if fid in self.findings:
                # the bugs whose catalog entry says they cause this symptom first, then the others
                own = [d.id for d in found if fid in (getattr(d, "explains", ()) or ())]
                self.findings[fid].related = [*own, *(i for i in ids if i not in own)]

    def _which_form(self, d: Any) -> str:
        """`` Here: <the form that matched>.`` when the bug has several forms for this rule (or a group)."""
        if not d.variant or d.hyper:
            return ""
        bug = _catalog_entry(d.id)
        forms = len(bug.variants(self.rule)) if bug is not None else 0
        if forms > 1 or " only" in d.variant or d.convention:
            under = f" (under the convention {d.convention})" if d.convention else ""
            return f" Here: {d.variant}{under}."
        return ""

    def _unexplained_roles(self) -> None:
        """No rule, no false blame: when nothing reproduces the target, its states' roles are guesses.

        The reference's name map says which of the target's states is a second moment or an
        accumulator; only a rule (the reference, a convention or a catalog mutant) that reproduces
        the target confirms it. Without one (a signed accumulator named ``s``, an additive moment
        that may stay unchanged), the judgements that rest on those roles are withdrawn.
        """
        if "differs-from-reference" not in self.findings:
            return
        for fid in ROLE_BOUND_INVARIANTS:
            f = self.findings.pop(fid, None)
            if f is not None and not (fid == "state-not-updated" and f.where == "state"):
                self.notes.append(
                    f"{fid} at {f.where or 'the state'} not reported: no known rule reproduces the target, so "
                    f"what that state is (the role {self.rule_name} gives it) is not confirmed"
                )
            elif f is not None:
                self.findings[fid] = f  # a functional target that returned no state at all

    def _adopt_conventions(self, explanation: Any) -> None:
        """Conventions that reproduce every recorded case, the search's included: not a bug after all."""
        convs = list(getattr(explanation, "conventions", ()) or ())
        if not convs or getattr(explanation, "verdict", "fail") != "pass":
            return
        for fid in ("differs-from-reference", *RULE_BOUND_INVARIANTS):
            self.findings.pop(fid, None)
        for conv in convs:
            if conv.id not in self.conventions:
                self.conventions.append(conv.id)
                self.convention_findings.append(Finding(conv.id, "info", conv.message))

    # -- the report ----------------------------------------------------------------------------------

    def _binding_lines(self) -> list[tuple[str, str]]:
        """``(argument, what it receives)`` in signature order, for the report."""
        plan, style = self.plan, self.style
        gp, sp = plan.grad_prefix, plan.state_prefix
        layout = "W1, b1, W2, b2, ..."
        specs = {spec.name: spec for spec in self.rule_cls.hyper_specs()}
        inverse = {user: key for user, key in (self.state_map or {}).items()}
        roles_of = dict(getattr(self.rule_cls, "state_roles", {}))
        l2_names = set()
        if self.binding.l2 is not None:
            l2_names = {self.binding.l2[3], self.binding.l2[4]}

        container = plan.container

        def describe_call(c: Any) -> str:
            if plan.per_key and c.role in ("params", "grads", "key"):
                per = {
                    "params": "one parameter array",
                    "grads": "its gradient",
                    "key": "its key ('W1', 'b1', ...)",
                }
                return f"{per[c.role]} (called once per array)"
            if c.role == "layer":
                return "a layer object with attributes W, b and their gradients dW, db"
            if c.role == "params":
                if container in ("array", "vector"):
                    return "the parameter array" + (" (one dimension)" if container == "vector" else "")
                if style == "torch":
                    return f"a list of float64 tensors ({layout})"
                if container in ("list", "tuple"):
                    return f"the parameters, a {container} of arrays [W1, b1, ...]"
                if container == "args":
                    return f"the parameter {c.name!r}, one array"
                return f"the parameters, a dict {{{layout}}}"
            if c.role == "grads":
                if container in ("array", "vector"):
                    return "the gradient array"
                if container in ("list", "tuple"):
                    return f"the gradients, a {container} of arrays like the parameters"
                if container == "args":
                    return f"the gradient of {plan.arg_keys.get(c.name, '?')!r}, one array"
                return f"the gradients, a dict {{{gp}W1, {gp}b1, ...}}"
            if c.role == "grad_fn":
                return "a function returning this step's gradient (whatever it is called with)"
            if c.role == "callback":
                return "None"
            if c.role == "ostate":
                return "None on the first call, then the state it returned"
            if c.role == "state":
                key = inverse.get(c.state)
                what = f"{key} ({roles_of.get(key, 'state')})" if key else "a state"
                if c.state in self.unused_states:
                    return "zeros like the parameters; never changed by the target (unused, ignored)"
                if container != "dict":
                    return f"{what}: zeros like the parameters, then what the target returned or left in it"
                if style == "functional":
                    return f"the state it returned last time (None on the first call){'; ' + what if key else ''}"
                return f"{what}: a dict of zeros {{{sp}W1, {sp}b1, ...}}, then what the target returned or left in it"
            if c.role == "step":
                return "the step number: 1, 2, 3, ..."
            if c.role == "config":
                items = ", ".join(f"{k}={v!r}" for k, v in plan.config.items())
                mapped = ", ".join(f"{u} as {k}" for u, k in inverse.items())
                first = f"{{{items}}}" if items else "None"
                text = f"{first} on the first call, then the config it returned"
                return text + (f"; reads {mapped}" if mapped else "")
            if c.role == "hyper":
                if c.source == "betas":
                    return f"(beta1, beta2) = {c.value!r}"
                src = c.source or c.name
                if src not in specs:  # bound while --rule auto tried another rule: name it for this one
                    src = naming.resolve_hyper(c.name, list(specs)) or src
                doc = specs[src].doc if src in specs else ""
                value = c.value
                head = f"{src} = {value!r}" if src != c.name else f"{value!r}"
                return head + (f" ({doc})" if doc else "")
            if c.role == "arg":
                return f"{c.value!r} (--arg){', course L2' if c.name in l2_names else ''}"
            return str(c.role)

        params = list(self.info.params)
        calls = {c.name: c for c in plan.calls}
        out: list[tuple[str, str]] = []
        for p in params:
            if p.is_var:
                continue
            c = calls.get(p.name)
            if c is not None:
                out.append((p.name, describe_call(c)))
            elif p.name in l2_names:
                out.append((p.name, f"its default {p.default_repr} (course L2)"))
            elif p.has_default:
                out.append((p.name, f"not passed (its default {p.default_repr})"))
        if style == "object":
            for c in plan.step_calls:
                out.append((f"{plan.method}: {c.name}", describe_call(c)))
        return out

    def report(self) -> AuditReport:
        """The :class:`AuditReport` of what was found so far."""
        from .text import reproduction

        order = {
            "timeout": 0,
            "crashed": 0,
            "exited": 0,
            "protocol-violation": 0,
            "raised-exception": 1,
            "bad-return": 1,
            "budget-exhausted": 3,
        }
        findings = sorted(self.findings.values(), key=lambda f: (order.get(f.id, 2), f.step or 0))
        printed = self.worker.printed
        if printed > PRINT_REPORT_THRESHOLD:
            findings.append(
                Finding(
                    "printed-output",
                    "info",
                    f"the target printed {printed:,} characters during the audit (not shown); "
                    f"it began: {self.worker.printed_head[:120]!r}",
                )
            )
        findings += self.convention_findings
        verdict = "fail" if any(f.severity == "error" for f in findings) else "pass"
        repro = None
        primary = next((f for f in findings if f.severity == "error"), None)
        if primary is not None and primary.id in self._cases:
            try:
                repro = reproduction(self, self._cases[primary.id], primary.id)
            except Exception:  # a snippet is a convenience; never fail the report for it
                repro = None
        return AuditReport(
            target=self.target_text,
            rule=self.rule_name,
            style=self._style_label(),
            verdict=verdict,
            seed=self.seed,
            findings=findings,
            conventions=[*self.conventions_base, *self.conventions],
            elapsed_s=time.monotonic() - self.t0,
            examples=self.examples,
            steps=self.steps,
            cases=self.cases_run,
            hyper=dict(self.rule.hyper),
            notes=self.notes,
            binding=self._binding_lines(),
            signature=self._called_as(),
            reproduction=repro,
            isolated=bool(getattr(self.worker, "isolated", False)),
            trajectory=self._diverging_trajectory(),
            torch_options=list(self.torch_options),
            torch_options_not_run=list(self.torch_options_not_run),
        )

    def _called_as(self) -> str:
        """The call as the audit makes it: the values actually passed, not the signature's defaults."""
        plan = self.plan

        def args(calls: Sequence[Any]) -> str:
            parts = []
            keyword = False  # after a keyword, the arguments the audit fills are shown as name=<what>
            for c in calls:
                if c.role in ("hyper", "arg"):
                    value = f"{c.value:g}" if isinstance(c.value, float) else repr(c.value)
                    parts.append(value if c.positional else f"{c.name}={value}")
                    keyword = keyword or not c.positional
                elif c.role in ("callback", "ignore"):
                    parts.append("None" if c.positional else f"{c.name}=None")
                    keyword = keyword or not c.positional
                elif keyword and not c.positional:
                    parts.append(f"{c.name}=<{_ROLE_WORDS.get(c.role, c.role)}>")
                else:
                    parts.append(c.name)
            return ", ".join(parts)

        name = self.info.name
        if plan.style == "object":
            ctor = f"opt = {name}({args(plan.calls)})"
            call = f"opt.{plan.method}({args(plan.step_calls)})"
            return f"{ctor}; {call}" + (f"; opt.{plan.after}()" if plan.after else "")
        if plan.style == "triple":
            return f"init, update, get_params = {name}({args(plan.calls)}); state = update(i, g, state)"
        if plan.style in ("dict", "functional", "loop", "config"):
            return f"{name}({args(plan.calls)})"
        return self.info.signature_text()

    def _style_label(self) -> str:
        """The style as the report names it: a function style's container when it is not a dict."""
        plan = self.plan
        if self.style == "dict" and plan.container != "dict":
            label = {
                "array": "array",
                "vector": "array",
                "list": "list",
                "tuple": "list",
                "args": "per-array arguments",
            }
            text = label.get(plan.container, plan.container)
        else:
            text = self.style
        if not any(c.role == "params" for c in plan.calls) and self.style in ("dict", "functional"):
            text += ", returns the step"
        return text

    def _diverging_trajectory(self) -> Trajectory | None:
        results: list[CaseResult] = [*self.probe_results, *self.failing]
        for res in results:
            if res.divergence is not None and res.failure is None:
                return res.traj
        return None


#: Differences below this size are rounding in the subnormal range, not bugs: an implementation
#: that computes ``lr * g`` first underflows to 0 where torch's ``g / (sqrt(v) + eps) * lr`` gives
#: 5e-318. ``optcheck._compare`` measures errors relative to the leaf's largest entry, which is
#: itself subnormal then.
NEGLIGIBLE = {"float64": 1e-290, "float32": 1e-30}


def _negligible(d: Any) -> bool:
    if d.target is None or d.reference is None:
        return False
    if not (math.isfinite(d.target) and math.isfinite(d.reference)):
        return False
    return bool(max(abs(d.target), abs(d.reference)) < NEGLIGIBLE["float64"])


def _rtol(tree: Any) -> float:
    from .._compare import rtol

    leaves = flatten(tree)
    return max((rtol(np.asarray(v).dtype) for _, v in leaves), default=rtol("float64"))


def _same_outputs(a: Sequence[StepOutput], b: Sequence[StepOutput]) -> bool:
    return _first_difference(a, b)[0] == 0


def _first_difference(a: Sequence[StepOutput], b: Sequence[StepOutput]) -> tuple[int, str]:
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        for (path, u), (_, v) in zip(flatten(x.params), flatten(y.params), strict=False):
            if not np.array_equal(u, v, equal_nan=True):
                return k + 1, path_str("params", path)
    if len(a) != len(b):
        return min(len(a), len(b)) + 1, "the number of steps"
    return 0, ""


def _diagnose_module() -> Any:
    try:
        import importlib

        mod = importlib.import_module("optcheck.diagnose")
    except ImportError:
        return None
    return mod if hasattr(mod, "explain") else None


def _run_explain(diag: Any, trajs: Sequence[Trajectory]) -> Any:
    """``optcheck.diagnose.explain`` with the audit's budget (the one place the audit calls it)."""
    return diag.explain(trajs, budget=DIAGNOSE_BUDGET)


def _diagnoses(explanation: Any) -> list[Any]:
    for attr in ("diagnoses", "bugs", "matches"):
        v = getattr(explanation, attr, None)
        if v:
            return list(v)
    return []


def _convention_variant(convs: Sequence[Any], rule: Rule) -> Any:
    """The diagnosis ``Variant`` of the conventions matched (combined), or ``None``."""
    out: Any = None
    for conv in convs:
        v = conv.variant
        if not hasattr(v, "apply"):
            return None
        out = v if out is None else out.combine(v)
        if out is None:
            return None
    return out


def _readable(value: float) -> bool:
    """A value a person reads at a glance: a small integer, or ± a power of ten."""
    if value == int(value) and abs(value) <= 10:
        return True
    if value == 0:
        return True
    exp = math.log10(abs(value))
    return abs(exp - round(exp)) < 1e-12 and abs(value) == float(f"{abs(value):.0e}")


def _readable_candidates(value: float) -> list[float]:
    """Readable replacements for ``value``, most readable first: 0, ±1, ±2, then its power of ten
    (which keeps a finding that needs a tiny or a huge value)."""
    small = [0.0, 1.0, -1.0, 2.0, -2.0]
    if value == 0 or not math.isfinite(value):
        return small
    power = math.copysign(10.0 ** round(math.log10(abs(value))), value)
    if not math.isfinite(power) or power == 0 or power in small:
        return small
    return [*small, power]


def _constants_in_source(file: str | None, name: str) -> list[tuple[str, float, int]]:
    """``(name, value, line)`` of the number literals assigned in function or method ``name`` of ``file``.

    The parent reads the target's source text (it never runs it) to name a hard-coded
    hyperparameter the way the user wrote it (``beta2 = 0.999``).
    """
    import ast

    if not file:
        return []
    try:
        tree = ast.parse(open(file, encoding="utf-8").read())  # noqa: SIM115 - small file, read once
    except (OSError, SyntaxError, ValueError):
        return []
    short = name.split(".")[-1]
    out: list[tuple[str, float, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == short:
            for sub in ast.walk(node):
                if (
                    isinstance(sub, ast.Assign)
                    and len(sub.targets) == 1
                    and isinstance(sub.targets[0], ast.Name)
                    and isinstance(sub.value, ast.Constant)
                    and isinstance(sub.value.value, (int, float))
                    and not isinstance(sub.value.value, bool)
                ):
                    out.append((sub.targets[0].id, float(sub.value.value), sub.lineno))
    return out


_ROLE_WORDS = {
    "params": "parameters",
    "grads": "gradients",
    "state": "state",
    "ostate": "state",
    "step": "t",
    "grad_fn": "gradient function",
    "iters": "steps",
    "config": "config",
    "key": "key",
    "layer": "layer",
}

_CONTAINER_WORDS = {
    "array": "one array",
    "vector": "a one-dimensional array",
    "dict": "a dict of arrays",
    "list": "a list of arrays",
    "tuple": "a tuple of arrays",
}

_SYMBOLS = {"beta1": "β1", "beta2": "β2", "alpha": "α", "rho": "ρ", "eps": "ε", "momentum": "μ"}


def _hyper_symbol(name: str) -> str:
    return _SYMBOLS.get(name, name)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise AuditUsageError(f"--{name} {value!r} is invalid; expected a whole number >= {low}")
    return int(value)


def run_audit(
    target: Any,
    rule: str,
    *,
    hyper: Mapping[str, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    style: str = "auto",
    seed: int = 0,
    examples: int | None = None,
    steps: int | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    isolate: bool | None = None,
    cwd: str | None = None,
    bind: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    max_time: float | None = None,
) -> AuditReport:
    """Audit ``target`` (``"file.py:NAME"``, ``"module:NAME"``, or a function/class) against ``rule``.

    ``hyper`` sets the reference's hyperparameters (rule names or the usual aliases), ``args``
    the target's own extra arguments, ``bind`` the roles of arguments whose names do not say
    them (``{"a": "params"}``, like ``--bind a=params``). Raises :class:`~optcheck.audit.AuditUsageError` when the
    audit cannot run. ``isolate=False`` runs the target in this process (no protection against
    hangs and crashes); by default a target that can be re-imported by name runs in a child process,
    under ``limits`` (:class:`~optcheck.audit.targets.Limits`: memory, CPU per call, processes,
    file size, open files, reply size, environment variables passed through). ``max_time`` bounds
    the whole audit (default :data:`DEFAULT_MAX_TIME` seconds): when it runs out, the report holds
    what was covered and the error finding ``budget-exhausted``.
    """
    # the types of a Python caller's arguments (the CLI parses its flags first); the values of
    # timeout and max_time are checked by the Auditor, in the words of their CLI flags
    try:
        hyper = _v.check_mapping("hyper", hyper, what="a dict of hyperparameters ({'lr': 0.01})")
        args = _v.check_mapping(
            "args", args, what="a dict of the target's extra arguments ({'batch_size': 32})"
        )
        for name, value in (("timeout", timeout), ("max_time", max_time)):
            if value is not None:
                _v.check_float(name, value, finite=False)
        if isolate is not None:
            isolate = _v.check_bool("isolate", isolate)
        if progress is not None:
            _v.check_callable("progress", progress, what="a function progress(message)")
    except UsageError as e:
        raise AuditUsageError(str(e)) from None
    auditor = Auditor(
        target,
        rule,
        hyper=hyper,
        args=args,
        style=style,
        seed=seed,
        examples=examples,
        steps=steps,
        timeout=timeout,
        progress=progress,
        isolate=isolate,
        cwd=cwd if cwd is not None else os.getcwd(),
        bind=bind,
        limits=limits,
        max_time=max_time,
    )
    return auditor.run()


def _catalog_entry(bug_id: str) -> Any:
    """The diagnosis catalog's entry for ``bug_id`` (its wrong and fixed equations), or None."""
    from ..diagnose import CATALOG

    return CATALOG.get(bug_id)
