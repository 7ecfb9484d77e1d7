"""The documentation runs: every page's code, and every public name in the API reference.

For each page under ``docs/`` (``docs/**/*.md``) and ``README.md``, the fenced ``python`` blocks run top to
bottom in one fresh namespace (a new module, working directory = the repository root, the
root on ``sys.path``). What a block prints is compared with the ``text`` block that
immediately follows it, when there is one, by :class:`doctest.OutputChecker` with
``ELLIPSIS | NORMALIZE_WHITESPACE``: ``...`` in the expected text stands for anything (used
for figures that honestly vary, such as elapsed times).

* Warnings raised by a block are printed into its output as Python prints them
  (``file:line: Category: message``), with paths made relative to the repository root.
* A block that raises is compared like a doctest: the expected text must contain
  ``Traceback (most recent call last):``; the indented stack lines after it are ignored and
  the exception line (``module.Type: message``) is compared. A block that raises when no
  traceback was expected fails the test with the traceback.
* ``bash`` blocks whose first command starts with ``python -m optcheck`` or ``optcheck`` run
  in ``bash`` (cwd = repository root, this interpreter first on ``PATH``); their stdout and
  stderr together are compared the same way. The exit status is not asserted (an audit that
  finds bugs exits 1); a page that wants to show it adds ``echo "exit status: $?"``.
* ``<!-- skip -->`` on the line(s) right before a block leaves that block out (used sparingly:
  blocks that need something CI cannot run, never to hide a failure).

The second half checks that every public name (``optcheck.__all__``, ``optcheck.rules.__all__``
and the ``__all__`` of each public module) is rendered by a ``::: ...`` directive of some
``docs/api/*.md`` page and has a docstring.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import doctest
import importlib
import importlib.util
import inspect
import io
import os
import re
import subprocess
import sys
import traceback
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]  # the README's tour runs too
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
CHECKER = doctest.OutputChecker()
TRACEBACK_HEADER = "Traceback (most recent call last):"
SUBPROCESS_TIMEOUT_S = 180

# ---------------------------------------------------------------------------------------------
# Parsing pages into blocks
# ---------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_SKIP = re.compile(r"^\s*<!--\s*skip\s*-->\s*$")


@dataclasses.dataclass
class Block:
    """One fenced code block of a page."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: bool


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order (indented fences included)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip()
        lang = info.split()[0].lstrip(".").lower() if info else ""
        lang = lang.split("{")[0]
        # a skip marker: the nearest non-blank line above the fence
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        skip = j >= 0 and bool(_SKIP.match(lines[j]))
        body: list[str] = []
        k = i + 1
        while k < len(lines):
            stripped = lines[k].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[k][len(indent) :] if lines[k].startswith(indent) else lines[k].lstrip())
            k += 1
        blocks.append(Block(lang=lang, code="\n".join(body) + "\n", line=i + 1, skip=skip))
        i = k + 1
    return blocks


def _is_cli_block(block: Block) -> bool:
    if block.lang not in ("bash", "sh", "shell", "console"):
        return False
    first = next((ln.strip() for ln in block.code.splitlines() if ln.strip()), "")
    return first.startswith(("python -m optcheck", "optcheck "))


_SNIPPET = re.compile(r"""^(?P<indent>\s*)-+8<-+\s+(?P<q>["'])(?P<spec>[^"']+)(?P=q)\s*$""")


def expand_snippets(code: str) -> str:
    """Replace ``--8<-- "path"`` and ``--8<-- "path:start:end"`` lines by the file's lines.

    The same inclusion ``pymdownx.snippets`` does when the site is built (paths relative to the
    repository root, 1-based inclusive line numbers), so the code a page shows is the code it runs.
    """
    out: list[str] = []
    for line in code.splitlines():
        m = _SNIPPET.match(line)
        if not m:
            out.append(line)
            continue
        path, _, lines = m["spec"].partition(":")
        text = (ROOT / path).read_text(encoding="utf-8").splitlines()
        if lines:
            start, _, end = lines.partition(":")
            text = text[int(start) - 1 : int(end) if end else None]
        out.extend(m["indent"] + t if t else t for t in text)
    return "\n".join(out) + "\n"


def runnable_pairs(blocks: list[Block]) -> list[tuple[Block, Block | None]]:
    """Each block that runs, with the ``text`` block right after it (its expected output) or None."""
    out: list[tuple[Block, Block | None]] = []
    for n, block in enumerate(blocks):
        if block.skip or not (block.lang in ("python", "py", "python3") or _is_cli_block(block)):
            continue
        nxt = blocks[n + 1] if n + 1 < len(blocks) else None
        expected = nxt if nxt is not None and nxt.lang in ("text", "txt", "output") else None
        out.append((block, expected))
    return out


# ---------------------------------------------------------------------------------------------
# Running blocks
# ---------------------------------------------------------------------------------------------


def _relpath(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(ROOT))
    except ValueError:
        return filename


@contextlib.contextmanager
def _warnings_into(out: io.StringIO) -> Iterator[None]:
    """Print warnings into ``out`` (as Python does, paths relative to the repo root), once per place."""

    def show(
        message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        out.write(warnings.formatwarning(message, category, _relpath(filename), lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def run_python_block(
    code: str, namespace: dict[str, Any], where: str, first_line: int = 1
) -> tuple[str, str | None]:
    """Run ``code`` in ``namespace``: (what it printed, its full traceback or None).

    When the code raises, the printed text ends doctest style: the traceback header and the
    exception line(s). ``where`` and ``first_line`` (the page and the line the code starts on)
    make tracebacks and warnings point at the page.
    """
    out = io.StringIO()
    tree = ast.parse(code, where, "exec")
    ast.increment_lineno(tree, first_line - 1)
    compiled = compile(tree, where, "exec", dont_inherit=True)  # not this file's __future__ imports
    tb: str | None = None
    with contextlib.redirect_stdout(out), _warnings_into(out):
        try:
            exec(compiled, namespace)
        except (Exception, SystemExit) as exc:
            out.write(TRACEBACK_HEADER + "\n")
            out.write("".join(traceback.format_exception_only(type(exc), exc)))
            tb = "".join(traceback.format_exception(exc))
    return out.getvalue(), tb


def run_python(code: str, namespace: dict[str, Any], where: str, first_line: int = 1) -> str:
    """What ``code`` printed (see :func:`run_python_block`)."""
    return run_python_block(code, namespace, where, first_line)[0]


def run_bash(code: str) -> str:
    """Run a shell block (``python`` = this interpreter); stdout and stderr together."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env["COLUMNS"] = "100"
    proc = subprocess.run(
        ["bash", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    return proc.stdout


def _expected_text(expected: str) -> str:
    """Doctest's treatment of an expected traceback: keep the header and the exception line(s)."""
    lines = expected.splitlines(keepends=True)
    if not any(ln.rstrip() == TRACEBACK_HEADER for ln in lines):
        return expected
    out: list[str] = []
    in_stack = False
    for ln in lines:
        if ln.rstrip() == TRACEBACK_HEADER:
            out.append(ln)
            in_stack = True
            continue
        if in_stack and (ln.startswith((" ", "\t")) or ln.strip() == "..."):
            continue
        in_stack = False
        out.append(ln)
    return "".join(out)


def _normalise(text: str) -> str:
    return "\n".join(ln.rstrip() for ln in text.strip("\n").splitlines()) + "\n"


def check_output(expected: str, got: str) -> str | None:
    """None when ``got`` matches ``expected``; else a readable difference."""
    want = _normalise(_expected_text(expected))
    got_n = _normalise(got)
    if CHECKER.check_output(want, got_n, FLAGS):
        return None
    return CHECKER.output_difference(doctest.Example("", want), got_n, FLAGS | doctest.REPORT_UDIFF)


def run_page(page: Path) -> list[str]:
    """Run every runnable block of ``page``; the failures as messages (empty when it all matches)."""
    rel = page.relative_to(ROOT)
    blocks = parse_blocks(page.read_text(encoding="utf-8"))
    module = types.ModuleType(f"optcheck_docs_{rel.stem.replace('-', '_')}")
    module.__file__ = str(page)
    namespace = module.__dict__
    failures: list[str] = []
    sys.modules[module.__name__] = module
    np_err = np.geterr()
    sys_path = list(sys.path)
    modules_before = set(sys.modules)
    try:
        for block, expected in runnable_pairs(blocks):
            where = f"{rel}:{block.line}"
            if block.lang.startswith("py"):
                got, tb = run_python_block(expand_snippets(block.code), namespace, str(rel), block.line + 1)
                raised_unexpectedly = tb is not None and (
                    expected is None or TRACEBACK_HEADER not in expected.code
                )
                if raised_unexpectedly:
                    failures.append(f"{where}: the python block raised\n{tb}")
                    break  # later blocks depend on this one
            else:
                got = run_bash(block.code)
            if expected is None:
                continue
            diff = check_output(expected.code, got)
            if diff is not None:
                failures.append(
                    f"{where}: output differs from the text block at line {expected.line}\n{diff}"
                )
    finally:
        sys.modules.pop(module.__name__, None)
        # leave no trace for the next test: numpy's error handling, sys.path, modules the page
        # imported from the repository outside the package (examples/, files it wrote)
        np.seterr(**np_err)
        folders = page_import_folders(sys.path, sys_path)
        sys.path[:] = sys_path
        for name in modules_to_unload(set(sys.modules) - modules_before, sys.modules, folders):
            del sys.modules[name]
    return failures


def page_import_folders(path_now: list[str], path_before: list[str]) -> set[Path]:
    """The folders a page imports its own modules from: what it added to ``sys.path``, and the repository root.

    A page puts ``examples/`` on ``sys.path`` and imports from it, or imports a module it wrote
    at the root (the working directory). Nothing else is the page's: not the package, and not a
    virtual environment that happens to sit beside or inside the repository.
    """
    before = set(path_before)
    folders = {ROOT}
    for entry in path_now:
        if entry not in before:
            folder = Path(entry) if Path(entry).is_absolute() else ROOT / entry
            folders.add(folder.resolve())
    return folders


def modules_to_unload(names: set[str], modules: Any, folders: set[Path]) -> list[str]:
    """The modules among ``names`` whose file sits directly in one of ``folders`` (a page's own modules).

    Compared as paths, not as strings: ``/tmp/ocvenv/...`` is not inside ``/tmp/oc``; and only a
    module directly in a folder (or a package directly in it) counts, so ``site-packages`` of a
    venv kept inside the repository is never unloaded.
    """
    out = []
    for name in sorted(names):
        file = getattr(modules.get(name), "__file__", None)
        if not file:
            continue
        where = Path(file).resolve().parent
        if where.name and (where / "__init__.py").exists() and Path(file).name == "__init__.py":
            where = where.parent  # a package: the folder that holds it
        if where in folders:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# Tests of the harness itself (so that a page test cannot pass by not running anything)
# ---------------------------------------------------------------------------------------------

_SAMPLE = """\
Intro.

```python
x = 2
print(x * 21)
```

```text
42
```

<!-- skip -->
```python
raise SystemExit("never run")
```

  ```python
  print("indented", 1.2345)
  ```
  ```text
  indented 1.2...
  ```

```bash
python -m optcheck --help
```

```bash
pip install optcheck
```
"""


def test_parse_blocks_finds_languages_lines_indents_and_skips() -> None:
    blocks = parse_blocks(_SAMPLE)
    assert [(b.lang, b.line, b.skip) for b in blocks] == [
        ("python", 3, False),
        ("text", 8, False),
        ("python", 13, True),
        ("python", 17, False),
        ("text", 20, False),
        ("bash", 24, False),
        ("bash", 28, False),
    ]
    assert blocks[3].code == 'print("indented", 1.2345)\n'
    pairs = runnable_pairs(blocks)
    assert [(b.line, e.line if e else None) for b, e in pairs] == [(3, 8), (17, 20), (24, None)]


def test_expand_snippets_includes_the_lines_the_site_shows() -> None:
    code = 'x = 1\n--8<-- "examples/rmsprop_nan.py:1:1"\n'
    first = (ROOT / "examples" / "rmsprop_nan.py").read_text(encoding="utf-8").splitlines()[0]
    assert expand_snippets(code) == f"x = 1\n{first}\n"


def test_check_output_matches_with_ellipsis_and_rejects_a_difference() -> None:
    assert check_output("took ... s\nresult: 3  \n", "took 0.12 s\nresult: 3\n") is None
    diff = check_output("result: 3\n", "result: 4\n")
    assert diff is not None and "result: 4" in diff


def test_run_python_shares_the_namespace_and_reports_exceptions_doctest_style() -> None:
    ns: dict[str, Any] = {}
    assert run_python("a = 5\nprint(a)", ns, "<sample>") == "5\n"
    got = run_python("print('before')\nraise ValueError(f'a is {a}')", ns, "<sample>")
    expected = "before\nTraceback (most recent call last):\n  File ...\n    ...\nValueError: a is 5\n"
    assert check_output(expected, got) is None
    assert check_output(expected.replace("is 5", "is 6"), got) is not None


def test_run_python_runs_code_as_a_script_would() -> None:
    """No ``from __future__ import annotations`` leaks in from this file: annotations are evaluated."""
    got = run_python("def f(a: undefined_name) -> None: pass", {}, "<sample>")
    assert "NameError: name 'undefined_name' is not defined" in got


def test_run_python_prints_warnings_into_the_output() -> None:
    got = run_python("import warnings\nwarnings.warn('careful', RuntimeWarning)\nprint('done')", {}, "<w>")
    assert "RuntimeWarning: careful" in got and got.endswith("done\n")


def test_run_bash_captures_output_and_stderr() -> None:
    assert run_bash("python -c 'import sys; print(1); print(2, file=sys.stderr)'") == "1\n2\n"


# ---------------------------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------------------------


def test_only_the_pages_own_modules_are_unloaded(tmp_path: Path) -> None:
    """A venv beside the repository (/tmp/oc and /tmp/ocvenv) or inside it keeps its modules loaded."""
    beside = ROOT.parent / (ROOT.name + "venv") / "lib" / "torch" / "__init__.py"
    inside = ROOT / ".venv" / "lib" / "site-packages" / "torch" / "__init__.py"
    example = ROOT / "examples" / "rmsprop_fixed.py"
    at_root = ROOT / "written_by_a_page.py"
    package = ROOT / "optcheck" / "guard" / "__init__.py"
    modules = {
        n: types.SimpleNamespace(__file__=str(f))
        for n, f in [("torch", beside), ("torch2", inside), ("rmsprop_fixed", example), ("page", at_root)]
    }
    modules["optcheck.guard"] = types.SimpleNamespace(__file__=str(package))
    modules["builtin"] = types.SimpleNamespace()
    folders = page_import_folders([*sys.path, "examples"], list(sys.path))
    assert folders == {ROOT, (ROOT / "examples").resolve()}
    assert modules_to_unload(set(modules), modules, folders) == ["page", "rmsprop_fixed"]


def test_there_are_pages_with_runnable_code() -> None:
    assert PAGES, "docs/ has no pages"
    runnable = [p for p in PAGES if runnable_pairs(parse_blocks(p.read_text(encoding="utf-8")))]
    assert runnable, "no page under docs/ has a runnable block"


def _page_param(page: Path) -> Any:
    """A page whose code runs the audit (``python -m optcheck audit``, ``run_audit``) takes tens of seconds: slow."""
    code = "\n".join(b.code for b in parse_blocks(page.read_text(encoding="utf-8")) if not b.skip)
    audits = any(s in code for s in ("optcheck audit", "run_audit(", "testing.audit(", "optcheck.audit("))
    return pytest.param(page, id=str(page.relative_to(ROOT)), marks=[pytest.mark.slow] if audits else [])


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES])
def test_page_code_runs_and_prints_what_the_page_shows(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not runnable_pairs(parse_blocks(page.read_text(encoding="utf-8"))):
        pytest.skip("no runnable blocks on this page")
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    failures = run_page(page)
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------------------------------------
# The API reference covers every public name, each with a docstring
# ---------------------------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"^:::\s*(?P<path>[\w.]+)\s*$", re.MULTILINE)


def _public_modules() -> list[str]:
    import optcheck

    return ["optcheck", "optcheck.rules", *(f"optcheck.{m}" for m in optcheck._SUBMODULES)]


def _resolve(dotted: str) -> Any:
    """The object at ``dotted`` (a module, or an attribute of one)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _directive_options(text: str, start: int) -> str:
    """The indented option lines under the directive that ends at ``start``."""
    lines = []
    for ln in text[start:].splitlines()[1:]:
        if ln.strip() and not ln.startswith((" ", "\t")):
            break
        lines.append(ln)
    return "\n".join(lines)


def documented_objects() -> list[tuple[str, Any]]:
    """(directive, object) for everything a ``docs/api`` directive renders.

    A module directive renders its ``__all__`` (mkdocstrings' default), unless the directive
    lists ``members:`` explicitly, in which case only those.
    """
    out: list[tuple[str, Any]] = []
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for m in _DIRECTIVE.finditer(text):
            path = m["path"]
            obj = _resolve(path)
            out.append((path, obj))
            if isinstance(obj, types.ModuleType):
                opts = _directive_options(text, m.start())
                listed = (
                    re.findall(r"^\s*-\s*([A-Za-z_]\w*)\s*$", opts, re.MULTILINE)
                    if "members:" in opts
                    else None
                )
                if listed is not None and re.search(r"members:\s*(false|\[\])", opts):
                    listed = []
                for name in listed if listed is not None else getattr(obj, "__all__", []):
                    out.append((f"{path}.{name}", getattr(obj, name)))
    return out


def public_names() -> list[tuple[str, Any]]:
    """(``module.name``, object) for every name in the ``__all__`` of every public module."""
    out: list[tuple[str, Any]] = []
    for mod_name in _public_modules():
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", []):
            if name == "__version__":
                continue
            out.append((f"{mod_name}.{name}", getattr(mod, name)))
    return out


def _is_documented(obj: Any, documented: list[tuple[str, Any]]) -> bool:
    return any(obj is d for _, d in documented)


def _own_docstring(obj: Any) -> str:
    """The docstring written for ``obj`` itself (not inherited, not a dataclass's generated one)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    doc = (doc or "").strip()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # dataclasses write "Name(field, ...)" when the class has no docstring
    return doc


def test_every_public_module_is_in_the_api_reference() -> None:
    documented = {path for path, obj in documented_objects() if isinstance(obj, types.ModuleType)}
    missing = [m for m in _public_modules() if m not in documented]
    assert not missing, f"public modules without a '::: module' directive in docs/api/*.md: {missing}"


def test_every_public_name_is_in_the_api_reference() -> None:
    documented = documented_objects()
    missing = [name for name, obj in public_names() if not _is_documented(obj, documented)]
    assert not missing, f"public names that no docs/api/*.md directive renders: {missing}"


def test_every_public_class_function_and_module_has_a_docstring() -> None:
    names = [
        (name, obj)
        for name, obj in public_names()
        if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)
    ]
    assert names
    missing = [name for name, obj in names if not _own_docstring(obj)]
    assert not missing, f"public names without a docstring: {missing}"


def test_every_public_constant_has_a_docstring() -> None:
    """Constants (``DEFAULT_OPS``, ...) carry an attribute docstring, read statically as mkdocstrings does."""
    griffe = pytest.importorskip("griffe", reason="griffe (the docs extra) reads attribute docstrings")
    names = [
        name
        for name, obj in public_names()
        if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj))
    ]
    if not names:
        pytest.skip("no public constants")
    package = griffe.load("optcheck", search_paths=[str(ROOT)], resolve_aliases=True)
    missing = []
    for name in names:
        obj = package[name.removeprefix("optcheck.")]
        target = obj.final_target if obj.is_alias else obj
        if target.docstring is None or not target.docstring.value.strip():
            missing.append(name)
    assert not missing, (
        f"public constants without a docstring (a string literal after the assignment): {missing}"
    )


# ---------------------------------------------------------------------------------------------
# The benchmark page is generated from benchmarks/results/
# ---------------------------------------------------------------------------------------------


def _report_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("optcheck_bench_report", ROOT / "benchmarks" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_page_shows_every_results_file_as_it_is() -> None:
    """``docs/benchmarks.md`` is regenerated (``python benchmarks/report.py``) after each benchmark run."""
    report = _report_module()
    page = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    stale = [p.name for p in report.result_files() if report.section(p) not in page]
    assert not stale, f"docs/benchmarks.md is out of date for {stale}; run python benchmarks/report.py"


def test_benchmark_report_demotes_headings_outside_code_only() -> None:
    report = _report_module()
    text = "# Title\n\n## Sub\n\n```bash\n# a comment\n```\n"
    assert report.demote(text) == "## Title\n\n### Sub\n\n```bash\n# a comment\n```\n"
