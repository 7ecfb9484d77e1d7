"""Loading the target and running it in an isolated child process.

``TARGET`` is ``path/to/file.py:NAME`` or ``package.module:NAME`` (``NAME`` may be dotted:
``Class.method``). The target is imported and called only inside a long-lived child process
(:class:`ProcessWorker`) that executes what the parent asks (a :class:`Batch` of ``put``,
``call``, ``setattr``, ``snap`` operations over a handle table) and answers with plain data in
the :mod:`._wire` format. The parent validates every reply and judges everything itself. An
exception, a hang, a crash of the interpreter, ``sys.exit``/``os._exit`` or a broken reply
becomes a :class:`TargetFailure`, and the child is restarted for the next case.
:class:`InProcessWorker` runs the same protocol in the current process, for targets that only
exist in memory (a function defined inside a test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _wire
from ._common import AuditUsageError, TargetInfo
from ._wire import TARGET, ProtocolViolation, Ref

__all__ = [
    "Batch",
    "BatchResult",
    "InProcessWorker",
    "Limits",
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
    """Import the target named by ``spec`` in this process (runs the user's module)."""
    from ._worker import load_object

    return load_object(dataclasses.asdict(spec), list(sys_path or []))


# ---------------------------------------------------------------------------------------------
# Failures of the target
# ---------------------------------------------------------------------------------------------


class TargetFailure(Exception):
    """The target raised, hung, crashed or exited during a call, or its process broke the protocol.

    ``id`` is the finding id: ``raised-exception``, ``timeout``, ``crashed``, ``exited``,
    ``bad-return`` or ``protocol-violation``; ``detail`` is one line for the report;
    ``traceback`` the user's frames; ``type_name`` and ``key`` the exception's type and, for a
    ``KeyError``, its key (plain data).
    """

    def __init__(
        self, id: str, detail: str, traceback: str = "", type_name: str = "", key: Any = None
    ) -> None:
        super().__init__(detail)
        self.id = id
        self.detail = detail
        self.traceback = traceback
        self.type_name = type_name
        self.key = key


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


#: The fraction of the machine's memory the target's address space may take by default.
MEMORY_FRACTION = 0.5


def default_max_memory() -> int | None:
    """Half of the machine's physical memory (``--max-memory``'s default); ``None`` if unknown."""
    total = _physical_memory()
    return int(total * MEMORY_FRACTION) if total else None


@dataclasses.dataclass(frozen=True)
class Limits:
    """The bounds the target's process runs under (each has a command-line flag).

    ``max_memory`` bytes of address space (``RLIMIT_AS``; default half the machine's memory),
    ``max_cpu`` CPU seconds per call (``RLIMIT_CPU``), ``max_procs`` processes and threads the
    target may add (``RLIMIT_NPROC``; not enforced by the kernel for root), ``max_file_size``
    bytes per file written (``RLIMIT_FSIZE``), ``max_open_files`` (``RLIMIT_NOFILE``),
    ``max_reply`` bytes of one reply of the child, ``timeout`` wall seconds per call,
    ``load_timeout`` wall seconds to import the target, ``env`` names of environment variables
    passed through to the target. ``None`` leaves a limit unset.
    """

    max_memory: int | None = dataclasses.field(default_factory=default_max_memory)
    max_cpu: float | None = 60.0
    max_procs: int | None = 256
    max_file_size: int | None = 64 * 2**20
    max_open_files: int | None = 1024
    max_reply: int = 64 * 2**20
    timeout: float = 10.0
    load_timeout: float = 60.0
    env: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Batches: the parent's side of the protocol
# ---------------------------------------------------------------------------------------------

_FAIL_IDS = ("raised-exception", "exited", "bad-return", "error", "load-error")


@dataclasses.dataclass
class BatchResult:
    """The answers of one batch: ``res[i]`` for the ``i`` returned by ``snap``/``describe``;
    ``printed`` characters the user's code printed during the batch, ``printed_head`` the start."""

    results: list[Any]
    printed: int = 0
    printed_head: str = ""

    def __getitem__(self, i: int) -> Any:
        return self.results[i]


class Batch:
    """Operations queued for the child and sent in one round trip by :meth:`run`."""

    def __init__(self, worker: Any) -> None:
        self._worker = worker
        self.ops: list[dict[str, Any]] = []
        self.calls = 0
        self._answers = 0

    def _name(self, name: str | None) -> str:
        if name is not None:
            return name
        self._worker._counter += 1
        return f"_{self._worker._counter}"

    def put(self, value: Any, name: str | None = None) -> Ref:
        """Make ``value`` (a spec) in the child and keep it under a handle."""
        n = self._name(name)
        self.ops.append({"op": "put", "name": n, "value": value})
        return Ref(n)

    def call(
        self,
        fn: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Ref:
        """Call ``fn`` (a ``Ref``) with specs; the return value is kept under the handle returned."""
        n = self._name(name)
        self.ops.append({"op": "call", "name": n, "fn": fn, "args": list(args), "kwargs": dict(kwargs or {})})
        self.calls += 1
        return Ref(n)

    def setattr(self, obj: Ref, attr: str, value: Any) -> None:
        """``obj.attr = value`` in the child."""
        self.ops.append({"op": "setattr", "obj": obj, "attr": attr, "value": value})

    def snap(self, value: Ref, depth: int | None = None) -> int:
        """Ask for a plain snapshot of ``value``; returns its index in the result."""
        self.ops.append({"op": "snap", "value": value, "depth": depth})
        self._answers += 1
        return self._answers - 1

    def describe(self, value: Ref) -> int:
        """Ask for the description of a callable or class; returns its index in the result."""
        self.ops.append({"op": "describe", "value": value})
        self._answers += 1
        return self._answers - 1

    def clear(self) -> None:
        """Drop every handle of the child except the target."""
        self.ops.append({"op": "clear"})

    def run(self, timeout: float | None = None) -> BatchResult:
        """Send the batch; the answers, or :class:`TargetFailure`."""
        reply = self._worker._exchange({"op": "batch", "ops": self.ops}, self.calls, timeout)
        result = BatchResult(list(reply["results"]), reply["printed"], reply["head"])
        self._worker._account(result)
        fail = reply["fail"]
        if fail is not None:
            raise _failure(fail, self._worker)
        if len(result.results) != self._answers:
            raise TargetFailure(
                "protocol-violation",
                f"the child sent {len(result.results)} answers for {self._answers} questions",
            )
        return result


def _encode_request(msg: dict[str, Any]) -> bytes:
    """One frame for a request; a value that is not plain data is a usage error (it came from the user)."""
    try:
        return _wire.encode(msg)
    except TypeError as e:
        raise AuditUsageError(
            f"a value for the target cannot be sent to its process ({e}); give numbers, strings, tuples, "
            "lists, dicts or numpy arrays"
        ) from None


def _validate_reply(reply: Any) -> dict[str, Any]:
    """The reply, checked to have the shape the child must send; ``ProtocolViolation`` if not."""
    if not isinstance(reply, dict) or set(reply) != {"results", "printed", "head", "fail"}:
        raise ProtocolViolation("a reply that is not {results, printed, head, fail}")
    if not isinstance(reply["results"], list):
        raise ProtocolViolation("a reply whose results are not a list")
    p = reply["printed"]
    if not isinstance(p, int) or isinstance(p, bool) or p < 0:
        raise ProtocolViolation("a reply whose printed count is not a count")
    if not isinstance(reply["head"], str):
        raise ProtocolViolation("a reply whose printed text is not text")
    fail = reply["fail"]
    if fail is not None:
        if not isinstance(fail, dict) or fail.get("id") not in _FAIL_IDS:
            raise ProtocolViolation("a reply with a failure of unknown kind")
        for k in ("message", "type", "tb"):
            if not isinstance(fail.get(k, ""), str):
                raise ProtocolViolation(f"a reply whose failure {k} is not text")
    return reply


def _failure(fail: Mapping[str, Any], worker: Any) -> TargetFailure:
    fid = fail["id"]
    msg = str(fail.get("message", ""))[:2000]
    type_name = str(fail.get("type", ""))[:200]
    tb = str(fail.get("tb", ""))[:8000]
    if fid == "raised-exception":
        detail = f"raised {type_name}: {msg}"
        mem = getattr(worker, "limits", None)
        if type_name == "MemoryError" and mem is not None and mem.max_memory:
            detail += f" (the target may use {_size(mem.max_memory)} of memory, --max-memory)"
        return TargetFailure("raised-exception", detail, tb, type_name, fail.get("key"))
    if fid == "exited":
        return TargetFailure("exited", msg, type_name="SystemExit")
    if fid == "bad-return":
        return TargetFailure("bad-return", msg)
    return TargetFailure("protocol-violation", f"made the audit's child process fail ({msg[:300]})", tb)


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def info_from_plain(d: Any, spec_text: str) -> TargetInfo:
    """The :class:`TargetInfo` of a description sent by the child (validated)."""
    try:
        return TargetInfo.from_plain(d, spec_text)
    except (TypeError, ValueError, KeyError) as e:
        raise ProtocolViolation(f"an invalid description of the target ({e})") from None


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


class _WorkerBase:
    isolated = False

    def __init__(self, limits: Limits | None) -> None:
        self.limits = limits or Limits()
        self.restarts = 0
        self.printed = 0
        self.printed_head = ""
        self._counter = 0

    def batch(self) -> Batch:
        """A new :class:`Batch` of operations for this worker."""
        return Batch(self)

    def _account(self, result: BatchResult) -> None:
        self.printed += result.printed
        if result.printed and len(self.printed_head) < 500:
            self.printed_head += result.printed_head[: 500 - len(self.printed_head)]

    def _exchange(self, msg: dict[str, Any], calls: int, timeout: float | None) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover


class InProcessWorker(_WorkerBase):
    """The executor in this process: no isolation (no timeout, no crash protection), the same
    protocol (every message is encoded and decoded, so results are what a child would send)."""

    isolated = False

    def __init__(self, obj: Any, spec_text: str, limits: Limits | None = None) -> None:
        from ._worker import Executor

        super().__init__(limits)
        self.spec_text = spec_text
        self._ex = Executor(max_reply=self.limits.max_reply)
        self._ex.handles["target"] = obj

    def load(self) -> TargetInfo:
        """The description of the target."""
        b = self.batch()
        i = b.describe(TARGET)
        return info_from_plain(b.run()[i], self.spec_text)

    def _exchange(self, msg: dict[str, Any], calls: int, timeout: float | None) -> dict[str, Any]:
        try:
            request = _wire.decode(_wire.encode(msg), specs=True)
        except TypeError:  # an object given by the user (a callable argument): in process, pass it as it is
            request = msg
        reply = self._ex.request(request)
        try:
            data = _wire.encode(reply, max_bytes=self.limits.max_reply + (1 << 20))
        except OverflowError:
            raise TargetFailure(
                "bad-return", f"returned more than {self.limits.max_reply:,} bytes (--max-reply)"
            ) from None
        return _validate_reply(_wire.decode(data))

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> InProcessWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_KEEP_ENV = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "SYSTEMROOT",
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONHASHSEED",
)
_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def child_env(scratch: str, token: str, passthrough: Sequence[str] = ()) -> dict[str, str]:
    """The scrubbed environment of the target's process.

    Kept: ``PATH``, the locale (``LANG``, ``LC_*``), library paths, ``PYTHONHOME``/``VIRTUAL_ENV``/
    ``CONDA_PREFIX``, the thread counts of the math libraries (1 when unset), and the names in
    ``passthrough`` (``--env``); ``HOME`` and ``TMPDIR`` point at the scratch directory;
    ``PYTHONPATH`` is optcheck's own location, then the user's.
    """
    src = os.environ
    env = {k: v for k, v in src.items() if k in _KEEP_ENV or k.startswith("LC_")}
    for k in _THREAD_ENV:
        env[k] = src.get(k, "1")
    for k in passthrough:
        if k in src:
            env[k] = src[k]
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + src["PYTHONPATH"] if src.get("PYTHONPATH") else "")
    env["HOME"] = env["TMPDIR"] = env["TMP"] = env["TEMP"] = scratch
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONNOUSERSITE"] = "1"  # the user's site directory is passed on sys.path instead
    env["OPTCHECK_AUDIT_TOKEN"] = token
    return env


class ProcessWorker(_WorkerBase):
    """The target in a long-lived child process, restarted after a crash, an exit, a timeout or a
    protocol violation.

    The child runs in a scratch directory (removed by :meth:`close`) with a scrubbed environment
    (:func:`child_env`), in its own process group, under :class:`Limits`. Its stdin, stdout and
    stderr are ``/dev/null`` (prints are counted inside it); the protocol uses pipes of its own.
    It dies with the parent (``PR_SET_PDEATHSIG`` on Linux, and a lifeline pipe watched by a
    reaper process on every POSIX system); :meth:`close` kills its process group and every
    process carrying the audit's token in its environment.
    """

    isolated = True

    def __init__(self, spec: TargetSpec, *, limits: Limits | None = None, cwd: str | None = None) -> None:
        super().__init__(limits)
        self.spec = spec
        self.cwd = cwd or os.getcwd()
        self.token = uuid.uuid4().hex
        self.scratch: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._send = self._recv = self._life = -1
        self._pending_load = False
        self.info: TargetInfo | None = None

    def _sys_path(self) -> list[str]:
        out = []
        for p in sys.path:
            out.append(str(Path(self.cwd, p).resolve()) if p in ("", ".") else p)
        if self.spec.kind == "file":
            out.insert(0, str(Path(self.spec.location).parent))
        return out

    def start(self) -> None:
        """Start a child process and send it the ``load`` request (the reply is read later)."""
        if self._proc is not None:
            return
        if self.scratch is None:
            self.scratch = tempfile.mkdtemp(prefix="optcheck-audit-")
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        life_r, life_w = os.pipe()
        lim = self.limits
        config = {
            "parent": os.getpid(),
            "lifeline": life_r,
            "token": self.token,
            "max_memory": lim.max_memory,
            "max_cpu": lim.max_cpu,
            "max_procs": lim.max_procs,
            "max_file_size": lim.max_file_size,
            "max_open_files": lim.max_open_files,
            "max_reply": lim.max_reply,
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "optcheck.audit._worker", str(p2c_r), str(c2p_w), json.dumps(config)],
                pass_fds=(p2c_r, c2p_w, life_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=child_env(self.scratch, self.token, lim.env),
                cwd=self.scratch,
                start_new_session=True,
            )
        except BaseException:
            for fd in (p2c_w, c2p_r, life_w):
                os.close(fd)
            raise
        finally:
            for fd in (p2c_r, c2p_w, life_r):
                os.close(fd)
        self._send, self._recv, self._life = p2c_w, c2p_r, life_w
        spec = {
            "kind": self.spec.kind,
            "location": self.spec.location,
            "name": self.spec.name,
            "text": self.spec.text,
        }
        self._write({"op": "load", "spec": spec, "sys_path": self._sys_path()}, time.monotonic() + 10)
        self._pending_load = True

    # -- killing -------------------------------------------------------------------------------

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process that survives SIGKILL
            proc.wait(timeout=5)
        from ._worker import kill_marked

        kill_marked(self.token)
        for fd in (self._send, self._recv, self._life):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._send = self._recv = self._life = -1
        self._proc = None
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
            if signame == "SIGXCPU":
                return TargetFailure(
                    "timeout", f"used more than {self.limits.max_cpu:g} s of CPU time in one call (--max-cpu)"
                )
            return TargetFailure("crashed", f"crashed the Python interpreter ({signame})")
        return TargetFailure("exited", f"ended the process (os._exit or similar) with status {rc}")

    def _violation(self, why: str) -> TargetFailure:
        self._kill()
        self.restarts += 1
        return TargetFailure("protocol-violation", f"broke the audit's protocol: {why}")

    # -- talking -------------------------------------------------------------------------------

    def _write(self, msg: dict[str, Any], deadline: float) -> None:
        data = _encode_request(msg)
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            _, ready, _ = select.select([], [self._send], [], max(left, 0))
            if not ready:
                raise _wire.FrameTimeout()
            n = os.write(self._send, view[: 1 << 16])
            view = view[n:]

    def _read(self, deadline: float) -> dict[str, Any]:
        frame = _wire.read_frame(self._recv, deadline=deadline, max_bytes=self.limits.max_reply + (1 << 20))
        return _validate_reply(_wire.decode(frame))

    def _roundtrip(self, msg: dict[str, Any] | None, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        try:
            if msg is not None:
                self._write(msg, deadline)
            return self._read(deadline)
        except _wire.FrameTimeout:
            self._kill()
            self.restarts += 1
            raise TargetFailure("timeout", what) from None
        except ProtocolViolation as e:
            raise self._violation(str(e)) from None
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            raise self._died() from None

    def load(self) -> TargetInfo:
        """Start the child if needed and return the description of the loaded target."""
        self.start()
        if self._pending_load:
            self._pending_load = False
            t = self.limits.load_timeout
            try:
                reply = self._roundtrip(None, t, f"did not finish importing within {t:g} s")
                if reply["fail"] is not None:
                    raise AuditUsageError(
                        f"target {self.spec.text!r} could not be imported: {str(reply['fail'].get('message'))[:1000]}"
                    )
                if len(reply["results"]) != 1:
                    raise self._violation("the load reply holds no description")
                self.info = info_from_plain(reply["results"][0], self.spec.text)
            except ProtocolViolation as e:
                self._kill()
                raise AuditUsageError(
                    f"target {self.spec.text!r} could not be imported: it broke the audit's protocol ({e})"
                ) from None
            except TargetFailure as f:
                raise AuditUsageError(
                    f"target {self.spec.text!r} could not be imported: it {f.detail}"
                ) from None
        assert self.info is not None
        return self.info

    def _exchange(self, msg: dict[str, Any], calls: int, timeout: float | None) -> dict[str, Any]:
        self.load()
        t = self.limits.timeout if timeout is None else timeout
        return self._roundtrip(msg, t * max(1, calls), f"did not return within {t:g} s (--timeout)")

    def close(self) -> None:
        """Stop the child process (its whole process group) and remove the scratch directory."""
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._write({"op": "quit"}, time.monotonic() + 0.2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=0.5)
            self._kill()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> ProcessWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
