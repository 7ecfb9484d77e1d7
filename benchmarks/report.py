"""Build ``docs/benchmarks.md`` from the benchmark results in ``benchmarks/results/*.md``.

Usage (from the repository root)::

    python benchmarks/report.py          # regenerate the page from the results already there
    python benchmarks/report.py --run    # run every benchmarks/bench_*.py first, then regenerate

The page is the machine description (CPU model, cores, memory, Python and library versions),
the commands that reproduce the figures, then each results file in turn (its headings moved one
level down). Each benchmark writes its own results file; this script only concatenates them, so
the figures on the page are exactly the ones the scripts printed. Run it with ``--run`` on the
machine you want described: the description is of the machine that runs this script.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
PAGE = ROOT / "docs" / "benchmarks.md"

# the order of the sections on the page; any other results file follows, alphabetically
ORDER = ("rules", "gradcheck", "guard", "watch", "audit", "diagnose")
LIBRARIES = ("numpy", "torch", "scipy", "numdifftools", "hypothesis", "array-api-compat")


def cpu_model() -> str:
    """The CPU model named in /proc/cpuinfo (or what ``platform`` knows elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_gib() -> str:
    """Total memory from /proc/meminfo, in GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> str:
    """The machine as a Markdown table."""
    rows = [
        ("CPU", cpu_model()),
        ("cores usable / logical", f"{usable_cores()} / {os.cpu_count()}"),
        ("memory", memory_gib()),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        *((name, version(name)) for name in LIBRARIES),
        ("optcheck", version("optcheck")),
    ]
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines)


def result_files() -> list[Path]:
    """``benchmarks/results/*.md`` and ``*.txt`` in page order."""
    files = sorted([*RESULTS.glob("*.md"), *RESULTS.glob("*.txt")])

    def key(p: Path) -> tuple[int, str]:
        stem = p.stem.removeprefix("bench_")
        rank = next((i for i, name in enumerate(ORDER) if stem.startswith(name)), len(ORDER))
        return rank, p.name

    return sorted(files, key=key)


def bench_scripts() -> list[Path]:
    """The benchmark scripts, ``benchmarks/bench_*.py``, in page order."""
    scripts = sorted(BENCH.glob("bench_*.py"))

    def key(p: Path) -> tuple[int, str]:
        stem = p.stem.removeprefix("bench_")
        rank = next((i for i, name in enumerate(ORDER) if stem.startswith(name)), len(ORDER))
        return rank, p.name

    return sorted(scripts, key=key)


_HEADING = re.compile(r"^(#{1,5}) ", re.MULTILINE)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def demote(markdown: str) -> str:
    """Move every heading one level down (``#`` -> ``##``), leaving fenced code untouched."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence):
                fence = None
        elif fence is None:
            line = _HEADING.sub(lambda h: "#" + h.group(1) + " ", line)
        out.append(line)
    return "\n".join(out).strip() + "\n"


def section(path: Path) -> str:
    """One results file as a section of the page."""
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(ROOT).as_posix()
    body = demote(text) if path.suffix == ".md" else f"```text\n{text.rstrip()}\n```\n"
    if not body.lstrip().startswith("## "):
        body = f"## {path.stem}\n\n{body}"
    return f"<!-- from {rel} -->\n{body}"


def build_page(ran: bool = False) -> str:
    """The text of ``docs/benchmarks.md`` (``ran``: the benchmarks were just run on this machine)."""
    scripts = bench_scripts()
    files = result_files()
    commands = "\n".join(f"python {p.relative_to(ROOT).as_posix()}" for p in scripts)
    parts = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/report.py from benchmarks/results/*.md; do not edit by hand. -->",
        "",
        "Each benchmark compares optcheck with a named peer **measured in the same run** on the same",
        "machine, and reports ratios as well as times: absolute times depend on the machine, ratios",
        "much less. Timings are never asserted in tests; the machines that run CI are shared and noisy.",
        "",
        "## Reproduce",
        "",
        "From the repository root, with the test extras installed"
        ' (`pip install "torch==2.13.0" -e ".[test]"`):',
        "",
        "```bash",
        "python benchmarks/report.py --run   # runs every script below, then rebuilds this page",
        "```",
        "",
        "or one benchmark at a time (each writes its file under `benchmarks/results/`):",
        "",
        "```bash",
        commands or "# (no benchmark scripts yet)",
        "python benchmarks/report.py         # rebuild this page from benchmarks/results/",
        "```",
        "",
        "## Machine",
        "",
        f"Page generated on {_dt.date.today().isoformat()} on this machine; "
        + (
            "every benchmark below was run on it, in this order, just before the page was built (`--run`):"
            if ran
            else "the figures below come from the results files as they were (built without `--run`):"
        ),
        "",
        machine_description(),
        "",
    ]
    if not files:
        parts += ["No results yet: run the benchmarks.", ""]
    for path in files:
        parts += [section(path), ""]
    return "\n".join(parts).rstrip() + "\n"


def run_benchmarks() -> None:
    """Run every ``benchmarks/bench_*.py`` (each writes its results file); stop at the first failure."""
    for script in bench_scripts():
        rel = script.relative_to(ROOT).as_posix()
        print(f"$ python {rel}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"{rel} failed with exit status {proc.returncode}; the page was not rebuilt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run every benchmarks/bench_*.py first")
    parser.add_argument(
        "--output", type=Path, default=PAGE, help=f"where to write (default {PAGE.relative_to(ROOT)})"
    )
    args = parser.parse_args(argv)
    if args.run:
        run_benchmarks()
    text = build_page(ran=args.run)
    args.output.write_text(text, encoding="utf-8")
    n = len(result_files())
    print(f"wrote {args.output} ({n} results file{'s' if n != 1 else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
