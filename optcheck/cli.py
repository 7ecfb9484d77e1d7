"""The command line: ``python -m optcheck audit TARGET --rule RULE ...`` (also the ``optcheck`` script).

Argument parsing and exit codes only; the work is done by :func:`optcheck.audit.run_audit`.
Exit status: 0 when the audit found no error, 1 when it found at least one, 2 when it could
not run (a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main", "parse_value"]

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str) -> Any:
    """A ``--hyper``/``--arg`` value: a Python literal (``0.01``, ``1e-8``, ``(0.9, 0.999)``,
    ``true``/``True``), else the string itself."""
    word = text.strip()
    if word.lower() in _WORDS:
        return _WORDS[word.lower()]
    try:
        return ast.literal_eval(word)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class _UsageError(Exception):
    pass


class _Terminated(BaseException):
    """SIGTERM arrived: unwind (closing the target's process) and exit."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _pairs(values: Sequence[str] | None, option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise _UsageError(f"{option} {item!r} is invalid; expected NAME=VALUE, e.g. {option} lr=0.01")
        if name in out:
            raise _UsageError(f"{option} {name} is given twice")
        out[name] = parse_value(value)
    return out


def _roles(values: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        name, sep, role = item.partition("=")
        name, role = name.strip(), role.strip()
        if not sep or not name.isidentifier() or not role:
            raise _UsageError(f"--bind {item!r} is invalid; expected NAME=ROLE, e.g. --bind a=params")
        if name in out:
            raise _UsageError(f"--bind {name} is given twice")
        out[name] = role
    return out


def _parser() -> _Parser:
    from . import __version__

    p = _Parser(prog="optcheck", description="Numerical debugging of optimizers and gradients.")
    p.add_argument("--version", action="version", version=f"optcheck {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    a = sub.add_parser(
        "audit",
        help="audit your own update function or optimizer class against a reference rule",
        description=(
            "Run your update function (or optimizer class) against the reference rule on generated "
            "multi-step inputs, check invariants on every call, and name the bug. "
            "Exit status: 0 no error found, 1 errors found, 2 the audit could not run."
        ),
    )
    a.add_argument(
        "target",
        metavar="TARGET",
        help="path/to/file.py:NAME, package.module:NAME (NAME may be Class.method), or path/to/file.py "
        "when the file has one update function or optimizer class",
    )
    a.add_argument(
        "--rule",
        default="auto",
        help="the rule the target implements (optcheck.rules.names()); default auto: identify it; none: "
        "check only what holds for every update rule",
    )
    a.add_argument(
        "--hyper",
        action="append",
        metavar="NAME=VALUE",
        help="a hyperparameter of the reference (rule names or aliases: learning_rate, beta, "
        "epsilon, ...); repeatable",
    )
    a.add_argument(
        "--arg",
        action="append",
        metavar="NAME=VALUE",
        help="a value for one of the target's own extra arguments (batch_size=32); repeatable",
    )
    a.add_argument(
        "--bind",
        action="append",
        metavar="NAME=ROLE",
        help="what one of the target's arguments is, when its name does not say: params, grads, state, "
        "step, grad_fn, callback, iters, ignore, or a hyperparameter of the rule (lr, beta2, ...); repeatable",
    )
    a.add_argument(
        "--style",
        default="auto",
        choices=["auto", "dict", "config", "functional", "object", "torch"],
        help="the calling convention (default: detected)",
    )
    a.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")
    a.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    a.add_argument("--examples", type=int, default=None, help="generated cases per search round (default 60)")
    a.add_argument("--steps", type=int, default=None, help="steps per case (default 5)")
    a.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one call of the target may take before it counts as hung (default 10)",
    )
    a.add_argument(
        "--max-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds the whole audit may take; then it reports what it covered, with the error finding "
        "budget-exhausted (default 300)",
    )
    lim = a.add_argument_group(
        "limits of the target's process",
        "The target runs in a child process with a scratch working directory and a scrubbed environment "
        "(docs/cli.md, 'Isolation and trust'). SIZE is bytes or a number with K, M, G or T; none removes a limit.",
    )
    lim.add_argument(
        "--max-memory",
        metavar="SIZE",
        default=None,
        help="address space of the target's process (default: half of the machine's memory)",
    )
    lim.add_argument(
        "--max-cpu", metavar="SECONDS", default=None, help="CPU seconds one call may use (default 60)"
    )
    lim.add_argument(
        "--max-procs",
        metavar="N",
        default=None,
        help="processes and threads the target may add (default 256; not enforced for root)",
    )
    lim.add_argument(
        "--max-file-size",
        metavar="SIZE",
        default=None,
        help="size of any file the target writes (default 64M)",
    )
    lim.add_argument(
        "--max-open-files",
        metavar="N",
        default=None,
        help="open files of the target's process (default 1024)",
    )
    lim.add_argument(
        "--max-reply", metavar="SIZE", default=None, help="bytes of data one call may send back (default 64M)"
    )
    lim.add_argument(
        "--env",
        action="append",
        metavar="NAME",
        help="pass the environment variable NAME through to the target (repeatable); others are removed",
    )
    a.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="draw where the target parts from the reference (needs matplotlib)",
    )
    return p


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _size(option: str, text: str | None, *, unit: bool = True, integer: bool = True) -> Any:
    """``--max-memory 2G`` and friends: a positive number (with a unit for sizes), or none."""
    if text is None:
        return "default"
    word = text.strip().upper().removesuffix("B") if unit else text.strip()
    if word.lower() == "none":
        return None
    mult = 1
    if unit and word and word[-1] in _UNITS:
        mult, word = _UNITS[word[-1]], word[:-1]
    try:
        value = float(word) * mult
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")) or (integer and not unit and value != int(value)):
        what = "a size in bytes, or with K, M, G or T (2G)" if unit else "a positive number"
        raise _UsageError(f"{option} {text!r} is invalid; expected {what}, or none")
    return int(value) if integer else value


def _limits(ns: argparse.Namespace) -> Any:
    from .audit.targets import Limits

    values = {
        "max_memory": _size("--max-memory", ns.max_memory),
        "max_cpu": _size("--max-cpu", ns.max_cpu, unit=False, integer=False),
        "max_procs": _size("--max-procs", ns.max_procs, unit=False),
        "max_file_size": _size("--max-file-size", ns.max_file_size),
        "max_open_files": _size("--max-open-files", ns.max_open_files, unit=False),
        "max_reply": _size("--max-reply", ns.max_reply),
    }
    if values["max_reply"] is None:
        raise _UsageError("--max-reply cannot be none; give a size such as 64M")
    for name in ns.env or ():
        if not name or "=" in name or "\0" in name:
            raise _UsageError(f"--env {name!r} is invalid; expected the NAME of an environment variable")
    return Limits(
        **{k: v for k, v in values.items() if v != "default"},
        env=tuple(ns.env or ()),
    )


def _progress_printer() -> Any:
    def show(msg: str) -> None:
        sys.stderr.write("\r\033[K  optcheck audit: " + msg)
        sys.stderr.flush()

    return show


def _error_json(ns: argparse.Namespace | None, reason: str) -> str:
    return json.dumps(
        {
            "target": getattr(ns, "target", None),
            "rule": getattr(ns, "rule", None),
            "style": None,
            "verdict": "error",
            "seed": getattr(ns, "seed", None),
            "findings": [],
            "conventions": [],
            "elapsed_s": 0.0,
            "error": reason,
        },
        indent=2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--format=json" in args or any(
        a == "--format" and i + 1 < len(args) and args[i + 1] == "json" for i, a in enumerate(args)
    )
    ns: argparse.Namespace | None = None
    previous = _install_sigterm()
    try:
        ns = _parser().parse_args(args)
        if ns.command is None:
            raise _UsageError(
                "optcheck: expected a command: optcheck audit TARGET --rule RULE (see optcheck --help)"
            )
        return _audit(ns)
    except _UsageError as e:
        return _fail(str(e), ns, wants_json)
    except KeyboardInterrupt:
        return _fail("optcheck audit: interrupted", ns, wants_json)
    except _Terminated:
        return _fail("optcheck audit: terminated (SIGTERM); the target's process was stopped", ns, wants_json)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _install_sigterm() -> Any:
    """Turn SIGTERM into an exception (main thread only), so the audit's clean-up runs."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        return None


def _fail(reason: str, ns: argparse.Namespace | None, wants_json: bool) -> int:
    if wants_json:
        print(_error_json(ns, reason))
    print(reason, file=sys.stderr)
    return EXIT_ERROR


def _audit(ns: argparse.Namespace) -> int:
    from .audit import AuditUsageError, run_audit

    hyper = _pairs(ns.hyper, "--hyper")
    extra = _pairs(ns.arg, "--arg")
    bind = _roles(ns.bind)
    limits = _limits(ns)
    if ns.max_time is not None and not (0 < ns.max_time < float("inf")):
        raise _UsageError(f"--max-time {ns.max_time!r} is invalid; expected a positive number of seconds")
    tty = sys.stdout.isatty() and ns.format == "text"
    progress = _progress_printer() if tty and sys.stderr.isatty() else None
    try:
        report = run_audit(
            ns.target,
            ns.rule,
            hyper=hyper,
            args=extra,
            bind=bind,
            style=ns.style,
            seed=ns.seed,
            examples=ns.examples,
            steps=ns.steps,
            timeout=ns.timeout,
            progress=progress,
            limits=limits,
            max_time=ns.max_time,
        )
    except AuditUsageError as e:
        if progress is not None:
            sys.stderr.write("\r\033[K")
        raise _UsageError(f"optcheck audit: {e}") from None
    if progress is not None:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
    if ns.plot:
        _plot(report, ns.plot)
    if ns.format == "json":
        print(report.to_json())
    else:
        color = tty and not os.environ.get("NO_COLOR")
        sys.stdout.write(report.render_text(color=bool(color)))
    return EXIT_PASS if report.verdict == "pass" else EXIT_FAIL


def _plot(report: Any, path: str) -> None:
    trajectory = report.trajectory
    if trajectory is None:
        print(
            f"optcheck audit: --plot {path}: nothing to plot (the target never left the reference)",
            file=sys.stderr,
        )
        return
    try:
        from .diagnose import plot_divergence

        plot_divergence(trajectory, None, path)
    except Exception as e:  # a plot is an extra; never change the exit status for it
        print(f"optcheck audit: --plot {path}: {type(e).__name__}: {e}", file=sys.stderr)
