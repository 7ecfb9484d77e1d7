"""The torch part of the audit: a ``torch.optim.Optimizer`` subclass run the ways its users run it.

The main audit steps the optimizer over one flat list of float64 parameters. A torch
optimizer has more paths than that, and a bug can live in one of them only. After the main
audit, :func:`audit_torch_options` runs short trajectories (6 steps) of the same optimizer,
built by the same constructor call, in each of these situations:

* two parameter groups, the second with half the learning rate and no weight decay;
* float32 and bfloat16 parameters (judged with the dtype's tolerance, ``optcheck._compare.rtol``);
* ``foreach=True``/``False``, ``fused=True`` and ``maximize=True`` (when the constructor takes them;
  an option the optimizer refuses, such as ``fused`` on a CPU build without it, is noted, not
  reported);
* a parameter whose ``.grad`` is None at every step (it must not move);
* sparse gradients (when the optimizer accepts them);
* ``step(closure)`` with a real closure that clears the gradients, recomputes a loss from the
  parameters and back-propagates it;
* ``state_dict()`` -> a new optimizer over the same parameters -> ``load_state_dict()`` after
  step 3, continuing with the new optimizer.

The child only executes (tensors are made, ``.grad`` set, ``step`` called, everything read back as
plain data); the parent replays the reference rule over each trajectory
(:func:`optcheck._compare.compare_trajectory`) and writes one finding per situation that
disagrees, its id ``torch-<situation>`` and its message naming the option combination.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._compare import compare_trajectory, rtol
from .._trajectory import Trajectory
from ..rules import Rule, naming
from ._common import Plan
from ._wire import TARGET, Closure, LinearLoss, Ref, Tensor
from .sessions import args_from, to_numpy
from .targets import TargetFailure

__all__ = ["SCENARIOS", "OptionFinding", "Scenario", "audit_torch_options", "bf16_round"]

STEPS = 6


@dataclasses.dataclass(frozen=True)
class OptionFinding:
    """What one situation showed; the engine turns it into a :class:`~optcheck.audit.report.Finding`."""

    id: str
    severity: str
    message: str
    where: str | None = None
    step: int | None = None
    expected: str | None = None
    got: str | None = None
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One situation a torch optimizer is run in (see the module docstring)."""

    slug: str
    label: str
    dtype: str = "float64"
    groups: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    none_grad: bool = False
    sparse: bool = False
    closure: bool = False
    reload_at: int | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("groups", "two parameter groups (the second with half the lr and no weight decay)", groups=True),
    Scenario("float32", "float32 parameters", dtype="float32"),
    Scenario("bfloat16", "bfloat16 parameters", dtype="bfloat16"),
    Scenario("foreach", "foreach=True", options=(("foreach", True),)),
    Scenario("single-tensor", "foreach=False", options=(("foreach", False),)),
    Scenario("fused", "fused=True", options=(("fused", True),)),
    Scenario("maximize", "maximize=True", options=(("maximize", True),)),
    Scenario("grad-none", "a parameter whose .grad is None", none_grad=True),
    Scenario("sparse", "sparse gradients", sparse=True),
    Scenario("closure", "a closure passed to step() that recomputes the loss", closure=True),
    Scenario(
        "state-dict",
        "state_dict() -> new optimizer -> load_state_dict() after step 3",
        reload_at=3,
    ),
)

_SHAPES = {"w": (3, 4), "b": (4,), "u": (2, 3)}


def bf16_round(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to bfloat16 (to nearest, ties to even), as float32: what ``tensor.bfloat16()`` keeps."""
    f = np.asarray(x, dtype=np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(np.isfinite(f), out, f)


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return bf16_round(x)
    return np.asarray(x, dtype=dtype)


def _tensor(x: np.ndarray, dtype: str, parameter: bool = False) -> Tensor:
    if dtype == "bfloat16":
        return Tensor(np.asarray(x, dtype=np.float32), parameter=parameter, dtype="bfloat16")
    return Tensor(np.asarray(x, dtype=dtype), parameter=parameter)


class _Run:
    """One scenario's trajectory, driven from the parent."""

    def __init__(self, auditor: Any, sc: Scenario, group_keys: Mapping[str, Any], accepts: set[str]) -> None:
        self.a = auditor
        self.sc = sc
        self.group_keys = group_keys
        self.accepts = accepts
        rng = np.random.default_rng(auditor.seed + 7)
        self.names = list(_SHAPES)
        self.params0 = {k: _cast(rng.normal(size=s), sc.dtype) for k, s in _SHAPES.items()}
        self.grads = [
            {k: _cast(rng.normal(size=s), sc.dtype) for k, s in _SHAPES.items()} for _ in range(STEPS)
        ]
        if sc.sparse:  # whole rows of zeros, as an embedding's gradient has
            for g in self.grads:
                for k in ("w", "u"):
                    g[k][0] = 0.0
        self.with_grad = [k for k in self.names if not (sc.none_grad and k == "u")]
        self.refs = {k: Ref(f"tp_{k}") for k in self.names}
        self.closure_ignored = False

    def ctor(self, params_arg: Any) -> tuple[list[Any], dict[str, Any]]:
        plan: Plan = self.a.plan
        pos, kw = args_from(plan.calls, {"params": params_arg})
        kw.update(plan.kwargs_hyper)
        kw.update(dict(self.sc.options))
        return pos, kw

    def params_arg(self) -> Any:
        if not self.sc.groups:
            return [self.refs[k] for k in self.names]
        second: dict[str, Any] = {"params": [self.refs["u"]]}
        second.update(self.second_group_changes())
        return [{"params": [self.refs["w"], self.refs["b"]]}, second]

    def second_group_changes(self) -> dict[str, Any]:
        """The second group's own values, under the optimizer's own keys: half the lr, no weight decay."""
        out: dict[str, Any] = {}
        hyper = naming.hyper_names(self.a.rule)
        for key, value in self.group_keys.items():
            meaning = naming.resolve_hyper(key, hyper, list(self.group_keys))
            if meaning == "lr" and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = value * 0.5
            elif (
                meaning == "weight_decay" and isinstance(value, (int, float)) and not isinstance(value, bool)
            ):
                out[key] = 0.0
        return out

    def run(self) -> tuple[list[dict[str, np.ndarray]], TargetFailure | None, int]:
        """The parameters after each step; the failure (and its step) when the target raised."""
        a = self.a
        sc = self.sc
        a._set_call_timeout()
        b = a.worker.batch()
        b.clear()
        for k in self.names:
            b.put(_tensor(self.params0[k], sc.dtype, parameter=True), name=self.refs[k].name)
        pos, kw = self.ctor(self.params_arg())
        b.call(TARGET, pos, kw, name="OPT")
        try:
            b.run(timeout=a.worker.call_timeout)
        except TargetFailure as f:
            return [], f, 0
        opt = "OPT"
        needs_closure = bool(getattr(a, "_torch_needs_closure", False))
        out: list[dict[str, np.ndarray]] = []
        for step in range(1, STEPS + 1):
            a._set_call_timeout()
            b = a.worker.batch()
            if sc.reload_at is not None and step == sc.reload_at + 1:
                b.call(Ref(opt).attr("state_dict"), [], name="SD")
                pos, kw = self.ctor(self.params_arg())
                b.call(TARGET, pos, kw, name="OPT2")
                b.call(Ref("OPT2").attr("load_state_dict"), [Ref("SD")])
                opt = "OPT2"
            g = self.grads[step - 1]
            for k in self.names:
                if k not in self.with_grad or sc.closure:
                    b.setattr(self.refs[k], "grad", None)
                    continue
                b.put(_tensor(g[k], sc.dtype), name=f"tg_{k}")
                if sc.sparse:
                    b.call(Ref(f"tg_{k}").attr("to_sparse"), [], name=f"tgs_{k}")
                    b.setattr(self.refs[k], "grad", Ref(f"tgs_{k}"))
                else:
                    b.setattr(self.refs[k], "grad", Ref(f"tg_{k}"))
            if sc.closure:
                args: list[Any] = [
                    LinearLoss(
                        [self.refs[k] for k in self.with_grad],
                        [
                            np.asarray(g[k], dtype=np.float32 if sc.dtype == "bfloat16" else sc.dtype)
                            for k in self.with_grad
                        ],
                    )
                ]
            elif needs_closure:
                args = [Closure(Tensor(np.zeros((), dtype=np.float64)))]
            else:
                args = []
            b.call(Ref(opt).attr("step"), args)
            idx = {k: b.snap(self.refs[k]) for k in self.names}
            gidx = b.snap(self.refs[self.with_grad[0]].attr("grad")) if sc.closure else None
            try:
                res = b.run(timeout=a.worker.call_timeout)
            except TargetFailure as f:
                return out, f, step
            if gidx is not None and res[gidx] is None:
                self.closure_ignored = True  # the closure sets every .grad: it was never called
                return out, None, 0
            out.append({k: to_numpy(res[i], f"params[{k!r}]") for k, i in idx.items()})
        return out, None, 0


def _accepted_options(info: Any) -> set[str]:
    names = {p.name for p in info.params}
    if any(p.kind == "VAR_KEYWORD" for p in info.params):
        names |= {"foreach", "fused", "maximize"}
    return names


def _refused(f: TargetFailure) -> bool:
    """Whether a failure is the optimizer refusing a situation it does not support (not a wrong update)."""
    text = f"{f.detail} {f.traceback or ''}".lower()
    return any(
        w in text
        for w in ("not support", "unsupported", "does not support", "requires", "only supported", "must be")
    )


def audit_torch_options(auditor: Any) -> list[OptionFinding]:
    """Run every :data:`SCENARIOS` situation the optimizer supports; return what they showed.

    The situations run and not run are recorded on ``auditor.torch_options`` and
    ``auditor.torch_options_not_run``.
    """
    info = getattr(auditor, "info", None)
    if info is None:
        return []
    accepts = _accepted_options(info)
    group_keys = _group_keys(auditor)
    if group_keys is None:
        return []
    found: list[OptionFinding] = []
    auditor._torch_needs_closure = _needs_closure(auditor)
    ran: list[str] = []
    for sc in SCENARIOS:
        missing = [k for k, _ in sc.options if k not in accepts]
        if missing:
            continue
        if sc.options and any(k in group_keys and group_keys[k] == v for k, v in sc.options):
            continue  # already the default: the main audit ran it
        run = _Run(auditor, sc, group_keys, accepts)
        params, failure, fstep = run.run()
        if failure is not None and failure.id in ("timeout", "crashed", "exited") and not params:
            auditor.torch_options_not_run.append(f"{sc.label} (the target {failure.detail})")
            continue
        if failure is not None and sc.sparse:
            # most optimizers do not take sparse gradients (torch's own raise); failing on one is not a wrong update
            auditor.torch_options_not_run.append(f"{sc.label} (not supported: {failure.detail[:120]})")
            continue
        if failure is not None and (sc.options or sc.dtype != "float64") and _refused(failure):
            auditor.notes.append(
                f"torch options: {sc.label}: the optimizer refuses it ({failure.detail[:160]})"
            )
            continue
        ran.append(sc.label)
        finding = _judge(auditor, run, params, failure, fstep)
        if finding is not None:
            found.append(finding)
    auditor.torch_options.extend(ran)
    return found


def _group_keys(auditor: Any) -> dict[str, Any] | None:
    """The optimizer's own param_groups keys and values (built once over one float64 parameter)."""
    b = auditor.worker.batch()
    b.clear()
    b.put(Tensor(np.zeros(2), parameter=True), name="tp_probe")
    pos, kw = args_from(auditor.plan.calls, {"params": [Ref("tp_probe")]})
    kw.update(auditor.plan.kwargs_hyper)
    b.call(TARGET, pos, kw, name="OPT")
    i = b.snap(Ref("OPT").attr("param_groups").item(0))
    try:
        res = b.run(timeout=auditor.worker.call_timeout)
    except TargetFailure:
        return None
    group = res[i]
    if not isinstance(group, Mapping):
        return None
    return {str(k): v for k, v in group.items() if k != "params"}


def _needs_closure(auditor: Any) -> bool:
    b = auditor.worker.batch()
    i = b.describe(Ref("OPT").attr("step"))
    try:
        desc = b.run(timeout=auditor.worker.call_timeout)[i]
    except TargetFailure:
        return False
    params = desc.get("params", []) if isinstance(desc, Mapping) else []
    return any(
        isinstance(p, Mapping) and p.get("name") == "closure" and not p.get("has_default") for p in params
    )


def _reference(auditor: Any, run: _Run) -> tuple[Rule, dict[tuple[str, ...], Rule], str | None]:
    rule, base, compute = auditor.reference_for({k: run.params0[k] for k in run.with_grad})
    sc = run.sc
    opts = dict(sc.options)
    if opts.get("maximize") is True and "maximize" in naming.hyper_names(rule):
        rule = rule.replace(maximize=True)
    overrides: dict[tuple[str, ...], Rule] = dict(base)
    if sc.groups:
        hyper = naming.hyper_names(rule)
        changes: dict[str, Any] = {}
        for key, value in run.second_group_changes().items():
            meaning = naming.resolve_hyper(key, hyper, list(run.group_keys))
            if meaning is not None:
                changes[meaning] = value
        overrides[("u",)] = rule.replace(**changes) if changes else rule
    return rule, overrides, compute


def _rounding_only(traj: Trajectory, d: Any, dtype: str) -> bool:
    """A parameter difference within the dtype's tolerance of the largest value that entry's array held.

    torch keeps some schedule scalars (NAdam's mu_product, ASGD's eta) in float32 tensors even for
    float64 parameters; the rounding they add is this small.
    """
    if d.what != "params" or d.target is None or d.reference is None or not d.path:
        return False
    if not (np.isfinite(d.target) and np.isfinite(d.reference)):
        return False
    key = d.path[0]
    history = [traj.params0, *traj.params[: d.step]]
    scale = max(float(np.max(np.abs(np.asarray(t[key], dtype=np.float64)))) for t in history if key in t)
    tol = max(rtol(dtype), float(np.finfo(np.float32).eps))
    return bool(abs(d.target - d.reference) <= tol * scale)


def _combo(auditor: Any, sc: Scenario) -> str:
    """The option combination, in the constructor's words."""
    hyper = ", ".join(f"{k}={v!r}" for k, v in auditor.plan.kwargs_hyper.items())
    given = [c for c in auditor.plan.calls if getattr(c, "role", "") == "hyper"]
    shown = ", ".join(f"{c.name}={c.value!r}" for c in given)
    base = ", ".join(x for x in (shown, hyper) if x)
    return f"{sc.label} ({auditor.target_text}({base}))" if base else sc.label


def _judge(
    auditor: Any,
    run: _Run,
    params: Sequence[Mapping[str, np.ndarray]],
    failure: TargetFailure | None,
    fstep: int,
) -> OptionFinding | None:
    sc = run.sc
    fid = f"torch-{sc.slug}"
    combo = _combo(auditor, sc)
    if run.closure_ignored:
        return OptionFinding(
            fid,
            "warning",
            f"with {combo}, step(closure) returned without calling the closure (every .grad was still None "
            "afterwards), so a closure-style training loop (`opt.step(closure)`) would never update with fresh "
            "gradients; call it as torch's optimizers do: `loss = None; if closure is not None: with "
            "torch.enable_grad(): loss = closure()`, then return loss",
            step=1,
        )
    if failure is not None:
        return OptionFinding(
            fid,
            "error",
            f"with {combo}, the target {failure.detail} at step {fstep or 1}",
            step=fstep or 1,
            detail=failure.traceback or None,
            got="raised",
        )
    if sc.none_grad:
        for k, p in enumerate(params, start=1):
            moved = np.flatnonzero(
                ~((p["u"] == run.params0["u"]) | (np.isnan(p["u"]) & np.isnan(run.params0["u"])))
            )
            if moved.size:
                j = int(moved[0])
                index = tuple(int(i) for i in np.unravel_index(j, _SHAPES["u"]))
                return OptionFinding(
                    fid,
                    "error",
                    f"with {combo}, params['u'] moved at step {k} although its .grad is None ({moved.size} of "
                    f"{p['u'].size} entries; first at {index}: {run.params0['u'].flat[j]:.6g} -> {p['u'].flat[j]:.6g}); "
                    "torch skips a parameter without a gradient (`if p.grad is None: continue`)",
                    where=f"params['u'][{', '.join(map(str, index))}]",
                    step=k,
                    expected=f"{run.params0['u'].flat[j]:.10g}",
                    got=f"{p['u'].flat[j]:.10g}",
                )
    keys = run.with_grad
    rule, overrides, ref_compute = _reference(auditor, run)
    compute = "float32" if sc.dtype in ("float32", "bfloat16") else ref_compute
    # one comparison per parameter group, each with its own rule (a rule's schedule scalars, such as
    # ASGD's eta, are one per rule: a group with another lr is its own trajectory)
    parts: list[tuple[list[str], Rule]] = []
    second = [k for k in keys if (k,) in overrides and sc.groups]
    first = [k for k in keys if k not in second]
    parts.append((first, rule))
    if second:
        parts.append((second, overrides[(second[0],)]))
    cmp = None
    traj = None
    for part_keys, part_rule in parts:
        traj = Trajectory(
            rule=part_rule,
            params0={k: run.params0[k] for k in part_keys},
            grads=[{k: g[k] for k in part_keys} for g in run.grads[: len(params)]],
            params=[{k: p[k] for k in part_keys} for p in params],
            states=None,
            overrides={path: r for path, r in overrides.items() if path[0] in part_keys and not sc.groups},
            names={"params": "params"},
            error=None,
        )
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            cmp = compare_trajectory(traj, part_rule, traj.overrides, dtype=sc.dtype, compute_dtype=compute)
        if (
            not cmp.matched
            and cmp.divergence is not None
            and not _rounding_only(traj, cmp.divergence, sc.dtype)
        ):
            break
    else:
        return None
    assert cmp is not None and cmp.divergence is not None and traj is not None
    d = cmp.divergence
    where = d.where({"params": "params"})
    versus = f"torch's {auditor.rule_name}" if auditor.rule is not None else "the reference"
    if d.target is not None and d.reference is not None:
        msg = (
            f"with {combo}, {where} is {d.target:.10g} after step {d.step}; {versus} gives {d.reference:.10g}"
        )
    else:
        msg = f"with {combo}, {d.message({'params': 'params'}, versus)}"
    if sc.groups and d.path and d.path[0] == "u":
        msg += f" (params['u'] is in the second group: {run.second_group_changes()})"
    if sc.reload_at is not None and d.step > sc.reload_at:
        msg += f"; steps 1-{sc.reload_at} before the state_dict round trip agreed"
    return OptionFinding(
        fid,
        "error",
        msg,
        where=where,
        step=d.step,
        expected=None if d.reference is None else f"{d.reference:.10g}",
        got=None if d.target is None else f"{d.target:.10g}",
    )
