"""Wall time of ``python -m optcheck audit`` on one correct target per calling style (median of N runs).

Each style's correct target in ``tests/targets/`` (the files that declare ``FINDS``) is audited
the way a learner would type it: ``python -m optcheck audit FILE`` (``FILE:Class.method`` where
the file names it), with only the ``--arg`` values its signature cannot tell, default settings
(``--rule auto``, 60 examples, 5 steps). Prints one markdown row per style: the flags it needed,
the verdict and rule, and the median wall time, with the machine's load average beside it.

    python benchmarks/bench_audit_styles.py [--runs 3] [--examples N]
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tests" / "targets"


def declared(path: Path) -> dict[str, Any] | None:
    """``FINDS`` and ``FLAGS`` of a target file, read with ``ast`` (``None``: not a style target)."""
    out: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        value = getattr(node, "value", None)
        for t in targets:
            if isinstance(t, ast.Name) and t.id in ("FINDS", "FLAGS") and value is not None:
                out[t.id] = ast.literal_eval(value)
    return out if "FINDS" in out else None


def command(path: Path, flags: dict[str, Any], examples: int | None) -> list[str]:
    """The audit command for ``path`` with its declared flags."""
    target = str(path.relative_to(ROOT)) + (f":{flags['name']}" if "name" in flags else "")
    cmd = [sys.executable, "-m", "optcheck", "audit", target, "--format", "json"]
    for k, v in flags.get("arg", {}).items():
        cmd += ["--arg", f"{k}={v}"]
    if examples is not None:
        cmd += ["--examples", str(examples)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--examples", type=int, default=None)
    ns = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print("| style | target | needs | verdict (rule) | median wall s | load (1 min) |")
    print("|---|---|---|---|---|---|")
    for path in sorted(TARGETS.glob("*_correct*.py")):
        decl = declared(path)
        if decl is None:
            continue
        flags = decl.get("FLAGS", {})
        cmd = command(path, flags, ns.examples)
        times, verdict = [], "?"
        for _ in range(ns.runs):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
            times.append(time.perf_counter() - t0)
            try:
                data = json.loads(proc.stdout)
                verdict = f"{data['verdict']} ({data['rule']})"
            except (ValueError, KeyError):
                verdict = f"exit {proc.returncode}: {proc.stderr.strip()[:80]}"
        needs = " ".join(f"--arg {k}={v}" for k, v in flags.get("arg", {}).items())
        needs += (" :" + flags["name"]) if "name" in flags else ""
        load = os.getloadavg()[0]
        print(
            f"| {path.stem.split('_')[0]} | `{path.name}` | {needs or 'nothing'} | {verdict} | "
            f"{statistics.median(times):.1f} | {load:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
