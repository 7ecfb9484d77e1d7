"""Loading the target and running it in an isolated child process.

``TARGET`` is ``path/to/file.py:NAME`` or ``package.module:NAME`` (``NAME`` may be dotted:
``Class.method``). The target is imported and called only inside a long-lived child process
(:class:`ProcessWorker`) that talks to the audit over a pipe; an exception, a hang, a crash of
the interpreter, ``sys.exit``/``os._exit`` or a flood of output in the target becomes a
:class:`TargetFailure` in the parent, and the child is restarted for the next case.
:class:`InProcessWorker` runs the same protocol in the current process, for targets that only
exist in memory (a function defined inside a test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ._common import AuditUsageError

__all__ = [
    "InProcessWorker",
    "ProcessWorker",
    "TargetFailure",
    "TargetSpec",
    "load_target",
    "parse_target",
    "spec_for_object",
]


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """Where the target lives: a file (``kind="file"``, absolute ``location``) or a module."""

    kind: str
    location: str
    name: str
    text: str

    def import_lines(self) -> list[str]:
        """Python lines that import the target as ``NAME`` (for reproduction snippets)."""
        attr = self.name.split(".")[0]
        if self.kind == "module":
            return [f"from {self.location} import {attr}"]
        path = Path(self.location)
        if path.stem.isidentifier():
            return [
                "import sys",
                f"sys.path.insert(0, {str(path.parent)!r})",
                f"from {path.stem} import {attr}",
            ]
        return [
            "import importlib.util",
            f"_spec = importlib.util.spec_from_file_location('target', {str(path)!r})",
            "_mod = importlib.util.module_from_spec(_spec)",
            "_spec.loader.exec_module(_mod)",
            f"{attr} = _mod.{attr}",
        ]


def parse_target(text: str, cwd: str | None = None) -> TargetSpec:
    """Parse ``path/to/file.py:NAME`` or ``package.module:NAME``; ``AuditUsageError`` when malformed.

    ``path/to/file.py`` alone names the file's one update function or optimizer class: the child
    finds it (:func:`find_candidates`) and the audit lists the candidates when there are several.
    """
    if isinstance(text, str) and ":" not in text and text.endswith(".py"):
        path = Path(cwd or os.getcwd(), text).resolve()
        if not path.is_file():
            raise AuditUsageError(f"TARGET {text!r}: the file {text!r} does not exist")
        return TargetSpec("file", str(path), "", text)
    if not isinstance(text, str) or ":" not in text:
        raise AuditUsageError(
            f"TARGET {text!r} is invalid; expected path/to/file.py:NAME or package.module:NAME "
            "(the function or class to audit after the colon)"
        )
    where, _, name = text.rpartition(":")
    if not where or not name or not all(part.isidentifier() for part in name.split(".")):
        raise AuditUsageError(
            f"TARGET {text!r} is invalid; expected path/to/file.py:NAME or package.module:NAME, "
            f"and {name!r} is not a Python name"
        )
    looks_like_file = where.endswith(".py") or "/" in where or os.sep in where
    if looks_like_file:
        path = Path(cwd or os.getcwd(), where).resolve()
        if not path.is_file():
            raise AuditUsageError(f"TARGET {text!r}: the file {where!r} does not exist")
        return TargetSpec("file", str(path), name, text)
    if not all(part.isidentifier() for part in where.split(".")):
        raise AuditUsageError(
            f"TARGET {text!r} is invalid; {where!r} is neither a .py file nor a module name"
        )
    return TargetSpec("module", where, name, text)


def spec_for_object(obj: Any) -> TargetSpec | None:
    """A spec that re-imports ``obj`` by name in a child process, or ``None`` when it cannot be.

    Functions and classes defined at the top level of a module of a package (imported by
    name) or of a ``.py`` file (loaded from its path) can be re-imported; lambdas, closures,
    objects defined in a script being run (``__main__``) or an interactive session, and names
    that were rebound, cannot.
    """
    qual = getattr(obj, "__qualname__", "")
    modname = getattr(obj, "__module__", None)
    if not qual or "<" in qual or not modname or modname == "__main__":
        return None  # loading a script again in a child would run the script again
    mod = sys.modules.get(modname)
    if mod is None:
        return None
    found: Any = mod
    for part in qual.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        return None
    file = getattr(mod, "__file__", None)
    is_py = bool(file) and str(file).endswith(".py") and Path(str(file)).is_file()
    if "." in modname and getattr(mod, "__spec__", None) is not None:
        return TargetSpec("module", modname, qual, f"{modname}:{qual}")
    if is_py:
        return TargetSpec("file", str(Path(str(file)).resolve()), qual, f"{file}:{qual}")
    return None


def load_target(spec: TargetSpec, sys_path: list[str] | None = None) -> Any:
    """Import the target named by ``spec`` (runs the user's module: call it in the child)."""
    if sys_path:
        for entry in reversed(sys_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
    if spec.kind == "file":
        path = Path(spec.location)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        modname = path.stem if path.stem.isidentifier() else "optcheck_target"
        if modname in sys.modules and getattr(sys.modules[modname], "__file__", None) != str(path):
            modname = f"optcheck_target_{abs(hash(str(path)))}"
        module = sys.modules.get(modname)
        if module is None:
            ispec = importlib.util.spec_from_file_location(modname, path)
            if ispec is None or ispec.loader is None:
                raise ImportError(f"cannot load {path} as a Python module")
            module = importlib.util.module_from_spec(ispec)
            sys.modules[modname] = module
            try:
                ispec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(modname, None)
                raise
    else:
        module = importlib.import_module(spec.location)
    if not spec.name:
        return _only_candidate(module, spec)
    obj: Any = module
    for part in spec.name.split("."):
        if not hasattr(obj, part):
            where = spec.location if spec.kind == "module" else Path(spec.location).name
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise AttributeError(f"{where} has no attribute {part!r} (callables there: {public[:12]})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec.text} is a {type(obj).__name__}, not a function or class")
    return obj


def find_candidates(module: Any) -> list[tuple[str, Any]]:
    """The functions and classes defined in ``module`` that look like an update rule, by their arguments.

    A function qualifies when one of its arguments is named like gradients (or a function returning
    them), or when it is a factory of ``(init, update, get_params)`` named like an optimizer; a class
    when one of its methods does. Helpers (``initialize_*``, ``forward_backward``, ``train``) do not.
    """
    from .adapters import looks_like_update

    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not callable(obj):
            continue
        if looks_like_update(obj):
            out.append((name, obj))
    return out


def _only_candidate(module: Any, spec: TargetSpec) -> Any:
    cands = find_candidates(module)
    if len(cands) == 1:
        return cands[0][1]
    where = Path(spec.location).name if spec.kind == "file" else spec.location
    if not cands:
        public = sorted(n for n, o in vars(module).items() if not n.startswith("_") and callable(o))
        raise AttributeError(
            f"{where} has no function or class that takes gradients (callables there: {public[:12]}); "
            f"name the target as {spec.text}:NAME"
        )
    names = [n for n, _ in cands]
    raise AttributeError(
        f"{where} has {len(names)} candidate targets {names}; name one as {spec.text}:{names[0]}"
    )


# ---------------------------------------------------------------------------------------------
# Failures of the target
# ---------------------------------------------------------------------------------------------


class TargetFailure(Exception):
    """The target raised, hung, crashed or exited during a call.

    ``id`` is the finding id: ``raised-exception``, ``timeout``, ``crashed``, ``exited`` or
    ``bad-return``; ``detail`` is one line for the report; ``traceback`` the user's frames.
    """

    def __init__(self, id: str, detail: str, traceback: str = "") -> None:
        super().__init__(detail)
        self.id = id
        self.detail = detail
        self.traceback = traceback


def failure_from_reply(reply: tuple[Any, ...]) -> TargetFailure:
    """Turn a non-``ok`` reply of the handler into a :class:`TargetFailure`."""
    kind = reply[0]
    if kind == "raised":
        return TargetFailure("raised-exception", f"raised {reply[1]}: {reply[2]}", reply[3])
    if kind == "exited":
        return TargetFailure("exited", f"called sys.exit({reply[1]!r})")
    if kind == "bad-return":
        return TargetFailure("bad-return", str(reply[1]))
    return TargetFailure("raised-exception", str(reply[1]))


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


class InProcessWorker:
    """Runs the worker protocol in this process: no isolation (no timeout, no crash protection)."""

    isolated = False

    def __init__(self, obj: Any, spec_text: str) -> None:
        from ._worker import Handler

        self._handler = Handler()
        self._handler.set_target(obj, spec_text)
        self.restarts = 0
        self.printed = 0

    def start(self) -> None:
        """Nothing to start."""

    def request(self, msg: tuple[Any, ...], timeout: float | None = None) -> Any:
        """Handle ``msg``; return the value of an ``ok`` reply or raise :class:`TargetFailure`."""
        reply = self._handler.handle(msg)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "error":
            raise RuntimeError(reply[1])
        raise failure_from_reply(reply)

    def close(self) -> None:
        """Nothing to close."""


class _Drain(threading.Thread):
    """Reads the child's stdout/stderr (C-level output of the target) so it can never block."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.count = 0
        self.head = b""

    def run(self) -> None:
        try:
            while True:
                chunk = (
                    self.stream.read1(1 << 16) if hasattr(self.stream, "read1") else self.stream.read(1 << 16)
                )
                if not chunk:
                    return
                self.count += len(chunk)
                if len(self.head) < 4000:
                    self.head += chunk[: 4000 - len(self.head)]
        except (OSError, ValueError):
            return


class ProcessWorker:
    """The target in a long-lived child process, restarted after a crash, an exit or a timeout.

    ``request(msg, timeout)`` sends one message and waits up to ``timeout`` seconds for the reply.
    The ``load`` message is remembered and replayed whenever a fresh child is started.
    """

    isolated = True

    def __init__(self, spec: TargetSpec, *, load_timeout: float = 60.0, cwd: str | None = None) -> None:
        self.spec = spec
        self.load_timeout = load_timeout
        self.cwd = cwd or os.getcwd()
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: Any = None
        self._recv: Any = None
        self._drain: _Drain | None = None
        self._printed_before = 0
        self._pending_load = False
        self.info: Any = None

    @property
    def printed(self) -> int:
        """Bytes the children wrote to their stdout/stderr so far."""
        return self._printed_before + (self._drain.count if self._drain else 0)

    def start(self) -> None:
        """Start a child process and send it the ``load`` message (the reply is read later)."""
        from multiprocessing.connection import Connection

        if self._proc is not None:
            return
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "optcheck.audit._worker", str(p2c_r), str(c2p_w)],
                pass_fds=(p2c_r, c2p_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            os.close(p2c_r)
            os.close(c2p_w)
        self._send = Connection(p2c_w, readable=False)
        self._recv = Connection(c2p_r, writable=False)
        self._drain = _Drain(self._proc.stdout)
        self._drain.start()
        self._send.send(("load", self.spec, list(sys.path)))
        self._pending_load = True

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process that survives SIGKILL
            proc.wait(timeout=5)
        self._discard()

    def _discard(self) -> None:
        for conn in (self._send, self._recv):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        if self._drain is not None:
            self._drain.join(timeout=1)
            self._printed_before += self._drain.count
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
        self._send = self._recv = None
        self._drain = None
        self._pending_load = False

    def _died(self) -> TargetFailure:
        proc = self._proc
        rc: int | None = None
        if proc is not None:
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = None
        self._kill()
        self.restarts += 1
        if rc is not None and rc < 0:
            try:
                signame = signal.Signals(-rc).name
            except ValueError:
                signame = f"signal {-rc}"
            return TargetFailure("crashed", f"crashed the Python interpreter ({signame})")
        return TargetFailure("exited", f"ended the process (os._exit or similar) with status {rc}")

    def _roundtrip(self, msg: tuple[Any, ...] | None, timeout: float) -> tuple[Any, ...]:
        try:
            if msg is not None:
                self._send.send(msg)
            if not self._recv.poll(timeout):
                self._kill()
                self.restarts += 1
                raise TargetFailure("timeout", f"did not return within {timeout:g} s (--timeout)")
            reply: tuple[Any, ...] = self._recv.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            raise self._died() from None
        return reply

    def load(self) -> Any:
        """Start the child if needed and return the ``TargetInfo`` of the loaded target."""
        self.start()
        if self._pending_load:
            self._pending_load = False
            try:
                reply = self._roundtrip(None, self.load_timeout)
            except TargetFailure as f:
                raise AuditUsageError(
                    f"target {self.spec.text!r} could not be imported: it {f.detail}"
                ) from None
            if reply[0] != "ok":
                detail = reply[1] if reply[0] in ("error", "bad-return") else failure_from_reply(reply).detail
                raise AuditUsageError(f"target {self.spec.text!r} could not be imported: {detail}")
            self.info = reply[1]
        return self.info

    def request(self, msg: tuple[Any, ...], timeout: float | None = None) -> Any:
        """Send ``msg``; return the value of an ``ok`` reply or raise :class:`TargetFailure`."""
        self.load()
        reply = self._roundtrip(msg, timeout if timeout is not None else 3600.0)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "error":
            raise RuntimeError(reply[1])
        raise failure_from_reply(reply)

    def close(self) -> None:
        """Stop the child process."""
        if self._proc is not None:
            try:
                self._send.send(("quit",))
                self._proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired, AttributeError):
                pass
            self._kill()

    def __enter__(self) -> ProcessWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
