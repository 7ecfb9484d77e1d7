"""The text report of an audit, and the runnable reproduction snippet."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..rules import naming

if TYPE_CHECKING:
    from .engine import Auditor, Case
    from .report import AuditReport, Finding

__all__ = ["render", "reproduction"]

_WIDTH = 100


def _c(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def _num(x: float) -> str:
    return repr(float(x)) if x == x and abs(x) not in (float("inf"),) else f"float({str(float(x))!r})"


def array_literal(a: Any) -> str:
    """``np.array([[0.5, -1.0]])``: a numpy literal that round-trips exactly."""
    arr = np.asarray(a)
    if arr.ndim == 0:
        return f"np.array({_num(float(arr))})"

    def rec(x: Any) -> str:
        if isinstance(x, list):
            return "[" + ", ".join(rec(v) for v in x) + "]"
        return _num(x)

    return f"np.array({rec(arr.tolist())})"


def _short(a: Any, limit: int = 8) -> str:
    """A compact rendering of a small array for the text report (``[[0.5, -1.0]]``)."""
    arr = np.asarray(a)
    if arr.size > limit * 4:
        return f"<{arr.dtype} array of shape {arr.shape}>"
    with np.printoptions(precision=6, suppress=False, threshold=64, linewidth=_WIDTH):
        text = np.array2string(arr, separator=", ")
    return " ".join(text.split())


def _tree_text(tree: Any) -> str:
    if isinstance(tree, Mapping):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in tree.items()) + "}"
    return _short(tree)


def _example_lines(example: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in example.items():
        if key == "grads" and isinstance(value, list):
            for i, g in enumerate(value):
                lines.append(f"grads at step {i + 1} = {_tree_text(g)}")
        else:
            lines.append(f"{key} = {_tree_text(value)}")
    return lines


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=_WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def _head(i: int, f: Finding, color: bool) -> str:
    sev = {"error": ("error", "31;1"), "warning": ("warning", "33;1"), "info": ("info", "36")}[f.severity]
    head = f"[{i}] {_c(sev[0], sev[1], color)} {_c(f.id, '1', color)}"
    loc = []
    if f.where:
        loc.append(f"at {f.where}")
    if f.step is not None:
        loc.append(f"step {f.step}")
    if loc:
        head += "  (" + ", ".join(loc) + ")"
    return head


def _finding_lines(i: int, f: Finding, color: bool, *, example: bool = True) -> list[str]:
    out = [_head(i, f, color)]
    out += _wrap(f.summary or f.message, "    ")
    if f.wrong:
        out += _wrap(f"wrong: {f.wrong}", "    ")
    if f.fix:
        out += _wrap(f"fix:   {f.fix}", "    ")
    if f.evidence:
        out += _wrap(f"evidence: {f.evidence}", "    ")
    elif f.got and f.expected and f.id not in ("shape-changed", "dtype-changed"):
        out += _wrap(f"expected {f.expected}, the target gave {f.got}", "    ")
    if f.detail:
        for line in f.detail.splitlines()[-8:]:
            out.append("    | " + line)
    if f.example and example:
        out.append("    input (shrunk):" if f.shrunk else "    input:")
        for line in _example_lines(f.example):
            out += _wrap(line, "      ")
    return out


def _symptom_lines(i: int, f: Finding, color: bool, *, example: bool = True) -> list[str]:
    out = [_head(i, f, color)]
    out += _wrap(f.message, "    ")
    if f.example and example:
        out.append("    input (shrunk):" if f.shrunk else "    input:")
        for line in _example_lines(f.example):
            out += _wrap(line, "      ")
    return out


def _is_diagnosis(f: Finding) -> bool:
    """A named bug: a catalog finding with its equations (not a reference-free symptom)."""
    return f.severity == "error" and not f.related and bool(f.fix) and bool(f.wrong or f.evidence)


def render(report: AuditReport, color: bool = False) -> str:
    """The text report: the verdict, then each named bug with the symptoms it explains, then what
    is not explained, then how the target was called, notes and the reproduction."""
    errors = [f for f in report.findings if f.severity == "error"]
    named = [f for f in errors if _is_diagnosis(f)]
    named_ids = {f.id for f in named}
    under: dict[str, list[Finding]] = {f.id: [] for f in named}
    unexplained: list[Finding] = []
    for f in errors:
        if f in named:
            continue
        owner = next((i for i in f.related if i in named_ids), None)
        if owner is not None:
            under[owner].append(f)
        else:
            unexplained.append(f)
    others = [f for f in report.findings if f.severity != "error"]
    where = f"{report.target} against {report.rule}"
    if report.verdict == "pass":
        verdict = _c("PASS", "32;1", color) + ": no error found"
        if report.conventions:
            verdict += " (under " + ", ".join(report.conventions) + ")"
    else:
        parts = []
        if named:
            ids = ", ".join(f.id for f in named)
            n_sym = sum(len(v) for v in under.values())
            parts.append(
                f"{len(named)} bug{'s' * (len(named) != 1)} named ({ids})"
                + (f", explaining {n_sym} symptom{'s' * (n_sym != 1)}" if n_sym else "")
            )
        if unexplained:
            ids = ", ".join(dict.fromkeys(f.id for f in unexplained))
            word = "problems" if len(unexplained) != 1 else "problem"
            parts.append(f"{len(unexplained)} {word} {'not explained ' if named else ''}({ids})")
        verdict = _c("FAIL", "31;1", color) + ": " + "; ".join(parts)
    lines = [verdict]
    lines.append(
        f"  {where}: {report.cases} cases of up to {report.steps} steps, seed {report.seed}, {report.elapsed_s:.1f} s"
        + ("" if report.isolated else " (run in this process: not isolated)")
    )
    n = 0
    if named:
        lines.append("")
        lines.append("Diagnosis:")
        for f in named:
            n += 1
            lines += _finding_lines(n, f, color)
            if under[f.id]:
                lines.append(f"    Symptoms of {f.id}:")
                for sym in under[f.id]:
                    n += 1
                    lines += ["    " + line for line in _symptom_lines(n, sym, color, example=False)]
            lines.append("")
    if unexplained:
        if not named:
            lines.append("")
        lines.append(
            "Not explained by a known bug:"
            if named
            else ("Problems:" if len(unexplained) > 1 else "Problem:")
        )
        for f in unexplained:
            n += 1
            lines += _finding_lines(n, f, color)
            lines.append("")
    if lines[-1]:
        lines.append("")
    lines.append(f"Called as ({report.style} style): {report.signature}")
    width = max((len(a) for a, _ in report.binding), default=0)
    for arg, role in report.binding:
        lines.append(f"  {arg.ljust(width)}  <- {role}")
    if report.notes:
        lines.append("Assumed:")
        for note in report.notes:
            lines += _wrap("- " + note, "  ")
    for title, items in (
        ("Also run (torch), each against the reference:", report.torch_options),
        ("Not run (torch):", report.torch_options_not_run),
    ):
        if items:
            lines.append(title)
            for item in items:
                lines += _wrap("- " + item, "  ")
    if others:
        lines.append("")
        lines.append("Notes:")
        for f in others:
            n += 1
            lines += _finding_lines(n, f, color)
            lines.append("")
    if report.reproduction:
        if lines[-1]:
            lines.append("")
        lines.append("Reproduce the first problem (runnable):")
        lines += ["    " + line if line else "" for line in report.reproduction.splitlines()]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Reproduction snippets
# ---------------------------------------------------------------------------------------------


def _dict_literal(tree: Mapping[str, Any], prefix: str = "") -> str:
    inner = ", ".join(f"{prefix + k!r}: {array_literal(v)}" for k, v in tree.items())
    return "{" + inner + "}"


def _kw_text(auditor: Auditor, roles: Mapping[str, str]) -> str:
    parts = []
    for c in auditor.plan.calls:
        if c.role == "state":
            text = roles.get("state", c.state) if auditor.style == "functional" else c.state
        elif c.role in roles:
            text = roles[c.role]
        elif c.role in ("hyper", "arg"):
            text = repr(c.value)
        else:
            continue
        parts.append(text if c.positional else f"{c.name}={text}")
    for k, v in auditor.plan.kwargs_hyper.items():
        parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def _reference_lines(auditor: Auditor, case: Case, grad_key: str) -> list[str]:
    rule = auditor.rule
    bound = {c.source for c in auditor.plan.calls if c.source}
    hyper = ", ".join(f"{k}={v!r}" for k, v in naming.changed_hyper(rule, bound).items())
    lines = [f"ref = optcheck.rules.get({rule.name!r}{', ' + hyper if hyper else ''})"]
    if auditor.binding.l2 is not None and isinstance(case.params0, Mapping):
        lines.append("no_decay = ref.replace(weight_decay=0.0)  # course L2: the biases are not decayed")
    lines.append("expected = {}")
    if isinstance(case.params0, Mapping):
        lines.append("for k, p in params0.items():")
        if auditor.binding.l2 is not None:
            lines.append('    rule = ref if k.startswith("W") else no_decay')
        else:
            lines.append("    rule = ref")
        lines.append("    state = rule.init(p)")
        lines.append("    for g in grads:")
        lines.append(f"        p, state = rule.step(p, g[{grad_key}], state)")
        lines.append("    expected[k] = p")
    else:
        lines.append("p, state = params0, ref.init(params0)")
        lines.append("for g in grads:")
        lines.append("    p, state = ref.step(p, g, state)")
        lines.append("expected = p")
    return lines


def _pack_expr(container: str, src: str, prefix: str = "", zeros: bool = False) -> str:
    """Python text that builds the target's container from the audit's dict (or array) ``src``."""
    leaf = "np.zeros_like(v)" if zeros else "v.copy()"
    if container == "array" or container == "vector":
        return f"np.zeros_like({src})" if zeros else f"{src}.copy()"
    if container == "list":
        return f"[{leaf} for v in {src}.values()]"
    if container == "tuple":
        return f"tuple({leaf} for v in {src}.values())"
    key = f"{prefix!r} + k" if prefix else "k"
    return f"{{{key}: {leaf} for k, v in {src}.items()}}"


def _call_args(
    calls: Sequence[Any], values: Mapping[str, str], kwargs: Mapping[str, Any] | None = None
) -> str:
    """The argument list of a call from the plan's ``calls`` (roles replaced by ``values``)."""
    parts = []
    for c in calls:
        if c.role in ("hyper", "arg"):
            text = repr(c.value)
        elif c.role in ("state", "ostate"):
            text = values.get("state:" + c.state, c.state)
        elif c.role in ("params", "grads") and c.state and ("arg:" + c.name) in values:
            text = values["arg:" + c.name]
        else:
            text = values.get(c.role, "None")
        parts.append(text if c.positional else f"{c.name}={text}")
    for k, v in (kwargs or {}).items():
        parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def _unpack_expr(container: str, src: str) -> str:
    if container in ("list", "tuple"):
        return f"dict(zip(params0, {src}))"
    return src


def _call_style_lines(auditor: Auditor, fn: str) -> tuple[list[str], str]:
    """``run_target()`` for the styles bound by meaning (functions, objects, loop drivers, factories)."""
    plan = auditor.plan
    c, gp, sp = plan.container, plan.grad_prefix, plan.state_prefix
    body: list[str] = []
    g_expr = "g" if c == "dict" else _pack_expr(c, "g", gp).replace(".copy()", "")
    has_params = any(x.role == "params" for x in [*plan.calls, *plan.step_calls])
    owner = plan.owner
    if plan.style == "loop":
        body.append("gs = iter(grads)")
        body.append("")
        body.append("def grad_fn(*args, **kwargs):  # the audit's gradients, one per call")
        body.append("    g = next(gs)")
        body.append(f"    return {g_expr}")
        body.append("")
        values = {"params": _pack_expr(c, "params0"), "grad_fn": "grad_fn", "iters": "len(grads)"}
        body.append(f"out = {fn}({_call_args(plan.calls, values, plan.kwargs_hyper)})")
        body.append("return " + _unpack_expr(c, "out[0] if isinstance(out, tuple) else out"))
        return body, ""
    if plan.style == "triple":
        body.append(f"init, update, get_params = {fn}({_call_args(plan.calls, {})})[:3]")
        body.append(f"state = init({_pack_expr(c, 'params0')})")
        body.append("for i, g in enumerate(grads):")
        body.append(f"    state = update(i, {g_expr}, state)")
        body.append("return " + _unpack_expr(c, "get_params(state)"))
        return body, ""
    if plan.style == "object":
        cls = owner or fn
        if c == "attrs":
            body.append("import types")
            body.append("layer = types.SimpleNamespace(**{k: v.copy() for k, v in params0.items()})")
        elif c == "args":
            for k in [a for a, kk in plan.arg_keys.items() if a == kk]:
                body.append(f"{k} = params0[{k!r}].copy()")
        else:
            body.append(f"params = {_pack_expr(c, 'params0')}")
        body.append(f"opt = {cls}({_call_args(plan.calls, {'params': 'params'}, plan.kwargs_hyper)})")
        body.append("for t, g in enumerate(grads, start=1):")
        if c == "attrs":
            body.append("    for k, v in g.items():")
            body.append(f"        setattr(layer, {(gp or 'd')!r} + k, v)")
            body.append(
                f"    opt.{plan.method}({_call_args(plan.step_calls, {'layer': 'layer', 'step': 't'})})"
            )
            result = "vars(layer)"
        elif plan.per_key:
            body.append("    for k in list(params):")
            args = _call_args(
                plan.step_calls, {"params": "params[k]", "grads": "g[k]", "key": "k", "step": "t"}
            )
            body.append(f"        out = opt.{plan.method}({args})")
            body.append("        params[k] = params[k] if out is None else out")
            result = "params"
        elif c == "args":
            values = {
                "step": "t",
                **{"arg:" + a: (a if a == k else f"g[{k!r}]") for a, k in plan.arg_keys.items()},
            }
            keys = [a for a, kk in plan.arg_keys.items() if a == kk]
            body.append(f"    out = opt.{plan.method}({_call_args(plan.step_calls, values)})")
            body.append("    if out is not None:")
            body.append(f"        {', '.join(keys)} = out[:{len(keys)}]")
            result = "{" + ", ".join(f"{k!r}: {k}" for k in keys) + "}"
        else:
            values = {
                "params": "params",
                "grads": g_expr,
                "grad_fn": f"lambda *a, **k: {g_expr}",
                "step": "t",
            }
            body.append(f"    out = opt.{plan.method}({_call_args(plan.step_calls, values)})")
            body.append("    params = params if out is None else out")
            result = _unpack_expr(c, "params")
        if plan.after:
            body.append(f"    opt.{plan.after}()")
        body.append(f"return {result}")
        return body, "k"
    # functions
    pv = "parameters" if c == "dict" else "params"
    body.append(f"{pv} = {_pack_expr(c, 'params0')}")
    values = {
        "params": pv,
        "grads": g_expr,
        "grad_fn": f"lambda *a, **k: {g_expr}",
        "step": "t",
        "iters": "1",
    }
    states = [x for x in plan.calls if x.role in ("state", "ostate")]
    for x in states:
        body.append(
            f"{x.state} = " + ("None" if x.role == "ostate" else _pack_expr(c, "params0", sp, zeros=True))
        )
    body.append("for t, g in enumerate(grads, start=1):")
    call = f"{fn}({_call_args(plan.calls, values, plan.kwargs_hyper)})"
    names = [x.state for x in states]
    if not has_params:
        sign = "+" if plan.direction > 0 else "-"
        body.append(f"    out = {call}")
        body.append("    step, *rest = out if isinstance(out, tuple) else (out,)")
        if c in ("array", "vector"):
            body.append(f"    {pv} = {pv} {sign} step")
        else:
            body.append(f"    {pv} = {{k: {pv}[k] {sign} step[k] for k in {pv}}}")
        if names:
            body.append(f"    {', '.join(names)}, *_ = (*rest, {', '.join(names)})")
    elif auditor.returned == "none":
        body.append(f"    {call}")
    elif auditor.returned == "params":
        body.append(f"    {pv} = {call}")
    else:
        body.append(f"    {pv}, {''.join(n + ', ' for n in names)}*_ = {call}")
    body.append("return " + _unpack_expr(c, pv))
    return body, (f"{gp!r} + k" if gp and c == "dict" else "k")


def _target_lines(auditor: Auditor, fn: str) -> tuple[list[str], str]:
    """The body of ``run_target()`` (runs the target over ``grads`` from fresh copies) and its key form."""
    plan, style = auditor.plan, auditor.style
    gp = plan.grad_prefix if style in ("dict", "object") else ""
    body: list[str] = []
    if style in ("dict", "functional", "object", "loop", "triple"):
        return _call_style_lines(auditor, fn)
    if style == "dict":
        sp = plan.state_prefix
        body.append("parameters = {k: v.copy() for k, v in params0.items()}")
        for s in plan.state_names:
            body.append(f"{s} = {{{sp!r} + k: np.zeros_like(v) for k, v in params0.items()}}")
        body.append("for t, g in enumerate(grads, start=1):")
        call = f"{fn}({_kw_text(auditor, {'params': 'parameters', 'grads': 'g', 'step': 't'})})"
        returned = auditor.returned
        if returned == "none":
            body.append(f"    {call}")
        elif returned == "params" or not plan.state_names:
            body.append(
                f"    parameters = {call}" if returned == "params" else f"    parameters, *_ = {call}"
            )
        else:
            outs = ", ".join(["parameters", *plan.state_names])
            body.append(f"    {outs}, *_ = {call}")
        body.append("return parameters")
        return body, (f"{gp!r} + k" if gp else "k")
    if style == "config":
        body.append("w, config = params0.copy(), " + (repr(dict(plan.config)) if plan.config else "None"))
        body.append("for dw in grads:")
        body.append(f"    w, config = {fn}(w, dw.copy(), config=config)")
        body.append("return w")
        return body, ""
    if style == "functional":
        body.append("param, state = params0.copy(), None")
        body.append("for t, g in enumerate(grads, start=1):")
        call = _kw_text(auditor, {"params": "param", "grads": "g", "state": "state", "step": "t"})
        body.append(f"    param, state = {fn}({call})")
        body.append("return param")
        return body, ""
    if style == "object":
        ctor = _kw_text(auditor, {"params": "parameters"})
        body.append("parameters = {k: v.copy() for k, v in params0.items()}")
        body.append(f"opt = {fn}({ctor})")
        step_args = []
        for c in plan.step_calls:
            v = {"params": "parameters", "grads": "g", "step": "t"}.get(c.role, repr(c.value))
            step_args.append(v if c.positional else f"{c.name}={v}")
        body.append("for t, g in enumerate(grads, start=1):")
        body.append(f"    out = opt.step({', '.join(step_args)})")
        body.append("    parameters = out if out is not None else parameters")
        body.append("return parameters")
        return body, (f"{gp!r} + k" if gp else "k")
    body.append("tensors = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params0.items()}")
    ctor = _kw_text(auditor, {"params": "list(tensors.values())"})
    body.append(f"opt = {fn}({ctor})")
    body.append("for g in grads:")
    body.append("    for k, p in tensors.items():")
    body.append("        p.grad = torch.from_numpy(g[k])")
    body.append("    opt.step()")
    body.append("return {k: p.detach().numpy() for k, p in tensors.items()}")
    return body, "k"


_HOSTILE = {
    "raised-exception": "raises",
    "timeout": "never returns",
    "crashed": "crashes the interpreter",
    "exited": "ends the process",
    "bad-return": "returns something unusable",
}


def reproduction(auditor: Auditor, case: Case, finding: str = "") -> str:
    """A self-contained script that runs the target on ``case`` and shows ``finding``.

    By default it prints the target's parameters next to the reference's; for
    ``nondeterministic`` it runs the target twice, for ``input-mutated`` it checks the
    gradients afterwards, for ``shape-changed``/``dtype-changed`` it prints shapes and dtypes.
    """
    spec = auditor.spec
    if spec is None:
        return ""
    name = spec.name or auditor.info.name
    if auditor.plan.owner:
        name = auditor.plan.owner + "." + auditor.info.method
    spec = dataclasses.replace(spec, name=name)
    fn = name.split(".")[0] if auditor.plan.owner else name
    if auditor.plan.owner:
        fn = auditor.plan.owner + "." + auditor.info.method
    style = auditor.style
    lines = ["import numpy as np", "import optcheck", *spec.import_lines(), ""]
    if style == "torch":
        lines.insert(0, "import torch")
    keyed = isinstance(case.params0, Mapping)
    lines.append(f"params0 = {_dict_literal(case.params0) if keyed else array_literal(case.params0)}")
    gp = auditor.plan.grad_prefix if auditor.plan.container == "dict" else ""  # the target's key form
    if keyed:
        gl = ",\n    ".join(_dict_literal(g, gp) for g in case.grads)
    else:
        gl = ",\n    ".join(array_literal(g) for g in case.grads)
    lines.append(f"grads = [\n    {gl},\n]  # one per step")
    lines.append("")
    body, grad_key = _target_lines(auditor, fn)
    lines.append("")
    lines.append("def run_target():")
    lines += ["    " + b for b in body]
    lines.append("")
    lines.append("")
    if finding in _HOSTILE:
        lines.append(f"run_target()  # the target {_HOSTILE[finding]} here")
        return "\n".join(lines)
    if finding == "nondeterministic":
        lines.append("first, second = run_target(), run_target()")
        if keyed:
            lines.append(
                'print("same result twice:", all(np.array_equal(first[k], second[k]) for k in first))'
            )
        else:
            lines.append('print("same result twice:", np.array_equal(first, second))')
        return "\n".join(lines)
    if finding == "input-mutated":
        lines.append("import copy")
        lines.append("")
        lines.append("given = copy.deepcopy(grads)")
        lines.append("run_target()")
        if keyed:
            lines.append(
                'print("gradients changed in place:", '
                "[k for g, g0 in zip(grads, given) for k in g if not np.array_equal(g[k], g0[k])])"
            )
        else:
            lines.append(
                'print("gradients changed in place:", not all(np.array_equal(g, g0) for g, g0 in zip(grads, given)))'
            )
        return "\n".join(lines)
    lines.append("out = run_target()")
    if finding in ("shape-changed", "dtype-changed"):
        if keyed:
            lines.append("for k in params0:")
            lines.append(
                '    print(k, "given", params0[k].shape, params0[k].dtype, "returned", out[k].shape, out[k].dtype)'
            )
        else:
            lines.append('print("given", params0.shape, params0.dtype, "returned", out.shape, out.dtype)')
        return "\n".join(lines)
    if getattr(auditor, "none", False):  # --rule none: no reference to print beside it
        lines.append('print("target:", out)')
        return "\n".join(lines)
    lines.append("")
    lines += _reference_lines(auditor, case, grad_key)
    lines.append("")
    if keyed:
        lines.append("for k in params0:")
        lines.append('    print(k, "target:", out[k].tolist(), "reference:", expected[k].tolist())')
    else:
        lines.append('print("target:", out.tolist(), "reference:", expected.tolist())')
    return "\n".join(lines)
