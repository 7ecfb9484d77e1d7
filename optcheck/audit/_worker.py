"""The audit's child process: a dumb executor of the target over a handle table.

Started by :class:`~optcheck.audit.targets.ProcessWorker` as ``python -m optcheck.audit._worker
FD_IN FD_OUT CONFIG_JSON``. It reads frames of :mod:`._wire` (never pickles) and answers each
with one frame. A request is ``{"op": "load", "spec": {...}, "sys_path": [...]}``, ``{"op":
"batch", "ops": [...]}`` or ``{"op": "quit"}``; a batch runs ``put``/``call``/``setattr``/
``snap``/``describe``/``clear`` in order and stops at the first failure. The reply is ``{"results":
[...], "printed": N, "head": TEXT, "fail": None | {"id", "type", "message", "tb", "key", "at"}}``.

The child judges nothing: it turns specs into objects, calls user code, and sends snapshots
(plain trees of numbers, strings and numeric arrays) back. The parent validates every reply and
does all the comparing. This module imports only the standard library, numpy and
:mod:`._wire`, so a target that patches the rest of optcheck in the child changes nothing the
parent believes. :class:`Executor` is also used in process by
:class:`~optcheck.audit.targets.InProcessWorker`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import io
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import _wire
from ._wire import Closure, GradFn, LinearLoss, Obj, Opaque, Recorder, Ref, Tensor

__all__ = ["Executor", "describe", "load_object", "main"]

#: Characters of printed output kept (the rest is only counted).
HEAD_CHARS = 2000

#: Default depth of a snapshot (containers and objects nested deeper become ``Opaque``).
SNAP_DEPTH = 8

MAX_STR = 10_000
MAX_ITEMS = 100_000


class _Sink(io.TextIOBase):
    """A stdout replacement that counts what is written and keeps the first characters."""

    def __init__(self) -> None:
        self.count = 0
        self.head: list[str] = []
        self._kept = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        n = len(s)
        self.count += n
        if self._kept < HEAD_CHARS:
            part = str(s)[: HEAD_CHARS - self._kept]
            self.head.append(part)
            self._kept += len(part)
        return n


@contextlib.contextmanager
def _capture() -> Iterator[_Sink]:
    sink = _Sink()
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield sink
    finally:
        sys.stdout, sys.stderr = old


class _Failure(Exception):
    def __init__(self, id: str, message: str, type_name: str = "", tb: str = "", key: Any = None) -> None:
        super().__init__(message)
        self.record = {"id": id, "type": type_name, "message": message, "tb": tb, "key": key}


class _TooBig(Exception):
    pass


_OUR_FILES = (str(Path(__file__).resolve().parent),)


def _user_traceback(exc: BaseException) -> str:
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not str(Path(f.filename).resolve()).startswith(_OUR_FILES)
    ]
    lines = traceback.format_list(frames[-4:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()[:4000]


def _plain_key(k: Any) -> Any:
    if k is None or isinstance(k, (bool, str)):
        return k
    if isinstance(k, (int, np.integer)):
        return int(k)
    if isinstance(k, (float, np.floating)):
        return float(k)
    if isinstance(k, tuple) and all(_plain_key(e) is e for e in k):
        return k
    return None


# ---------------------------------------------------------------------------------------------
# Helpers materialised from specs
# ---------------------------------------------------------------------------------------------


class _GradFn:
    """Returns the scripted gradients in turn; records a snapshot of its arguments at each call."""

    def __init__(self, ex: Executor, grads: list[Any], tensor: bool) -> None:
        self._ex = ex
        self._grads = grads
        self._tensor = tensor
        self.calls: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(self._ex.snapshot_safe((args, kwargs)))
        i = len(self.calls) - 1
        if i >= len(self._grads):
            raise IndexError(
                f"the gradient function was called {i + 1} times; the audit gave {len(self._grads)} gradients"
            )
        return self._ex.materialize(_wire.Tensor(self._grads[i]) if self._tensor else self._grads[i])


class _Recorder:
    """A callback: records snapshots of its arguments, returns a fixed value."""

    def __init__(self, ex: Executor, returns: Any) -> None:
        self._ex = ex
        self._returns = returns
        self.calls: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(self._ex.snapshot_safe((args, kwargs)))
        return self._ex.materialize(self._returns)


# ---------------------------------------------------------------------------------------------
# The executor
# ---------------------------------------------------------------------------------------------


class Executor:
    """A handle table and the operations the parent may ask for; never judges anything."""

    def __init__(self, *, max_reply: int = 64 * 2**20, cpu_per_call: float | None = None) -> None:
        self.handles: dict[str, Any] = {}
        self.max_reply = max_reply
        self.cpu_per_call = cpu_per_call
        self._snap_bytes = 0

    # -- requests ------------------------------------------------------------------------------

    def request(self, msg: Any) -> dict[str, Any]:
        """Answer one request (a decoded dict); never raises."""
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "load":
            return self._load(msg)
        if op == "batch" and isinstance(msg.get("ops"), list):
            return self.batch(msg["ops"])
        return _reply([], 0, "", {"id": "error", "message": f"unknown request {op!r}"})

    def _load(self, msg: dict[str, Any]) -> dict[str, Any]:
        with _capture() as sink:
            try:
                obj = load_object(msg["spec"], msg.get("sys_path") or [])
                self.handles["target"] = obj
                info = describe(obj, msg["spec"].get("text", ""))
                if info.get("is_torch_optimizer"):
                    _warm_up_torch()
                fail = None
                results = [info]
            except SystemExit as e:
                fail = {
                    "id": "load-error",
                    "message": f"the module called sys.exit({e.code!r}) while being imported",
                }
                results = []
            except BaseException as e:
                fail = {
                    "id": "load-error",
                    "message": "".join(traceback.format_exception_only(type(e), e)).strip(),
                }
                results = []
        return _reply(results, sink.count, "".join(sink.head), fail)

    def batch(self, ops: list[Any]) -> dict[str, Any]:
        """Run ``ops`` in order; stop at the first failure."""
        results: list[Any] = []
        fail: dict[str, Any] | None = None
        self._snap_bytes = 0
        with _capture() as sink:
            for i, op in enumerate(ops):
                try:
                    out = self._op(op)
                except _Failure as f:
                    fail = {**f.record, "at": i}
                    break
                except BaseException as e:  # a bad request: a bug in optcheck, not the target
                    fail = {
                        "id": "error",
                        "message": f"{type(e).__name__}: {e}",
                        "at": i,
                        "tb": traceback.format_exc(),
                    }
                    break
                if op.get("op") in ("snap", "describe"):
                    results.append(out)
        return _reply(results, sink.count, "".join(sink.head), fail)

    def _op(self, op: dict[str, Any]) -> Any:
        kind = op.get("op")
        if kind == "put":
            self.handles[op["name"]] = self.materialize(op["value"])
            return None
        if kind == "call":
            fn = self.materialize(op["fn"])
            args = [self.materialize(a) for a in op.get("args", [])]
            kwargs = {str(k): self.materialize(v) for k, v in op.get("kwargs", {}).items()}
            out = self._call(fn, args, kwargs)
            if op.get("name"):
                self.handles[op["name"]] = out
            return None
        if kind == "setattr":
            obj = self.materialize(op["obj"])
            value = self.materialize(op["value"])
            try:
                setattr(obj, op["attr"], value)
            except Exception as e:
                raise _Failure(
                    "raised-exception", str(e)[:500], type(e).__name__, _user_traceback(e)
                ) from None
            return None
        if kind == "snap":
            try:
                value = self.materialize(op["value"])
                return self.snapshot(value, int(op.get("depth") or SNAP_DEPTH))
            except _TooBig:
                raise _Failure(
                    "bad-return",
                    f"returned more than {self.max_reply:,} bytes of data (the reply limit, --max-reply)",
                ) from None
            except _Failure:
                raise
            except Exception as e:
                raise _Failure(
                    "bad-return", f"could not be read ({type(e).__name__}: {str(e)[:200]})"
                ) from None
        if kind == "describe":
            return describe(self.materialize(op["value"]))
        if kind == "clear":
            target = self.handles.get("target")
            self.handles.clear()
            if target is not None:
                self.handles["target"] = target
            return None
        raise ValueError(f"unknown op {kind!r}")

    def _call(self, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.cpu_per_call:
            _cpu_limit(self.cpu_per_call)
        try:
            return fn(*args, **kwargs)
        except SystemExit as e:
            raise _Failure(
                "exited", f"called sys.exit({e.code!r})", "SystemExit", "", _plain_key(e.code)
            ) from None
        except BaseException as e:
            msg = str(e)
            if len(msg) > 500:
                msg = msg[:500] + "..."
            key = _plain_key(e.args[0]) if isinstance(e, KeyError) and e.args else None
            raise _Failure("raised-exception", msg, type(e).__name__, _user_traceback(e), key) from None

    # -- specs -> objects --------------------------------------------------------------------------

    def resolve(self, ref: Ref) -> Any:
        """The object ``ref`` names, navigated along its path."""
        if ref.name not in self.handles:
            raise KeyError(f"no handle {ref.name!r}")
        obj = self.handles[ref.name]
        for kind, key in ref.path:
            try:
                obj = getattr(obj, key) if kind == "attr" else obj[self.materialize(key)]
            except Exception as e:
                what = f".{key}" if kind == "attr" else f"[{key!r}]"
                raise _Failure("bad-return", f"has no {what} ({type(e).__name__}: {str(e)[:200]})") from None
        return obj

    def materialize(self, spec: Any) -> Any:
        """A fresh object from a spec (plain data is rebuilt, arrays copied)."""
        if isinstance(spec, Ref):
            return self.resolve(spec)
        if isinstance(spec, np.ndarray):
            return spec.copy()
        if isinstance(spec, list):
            return [self.materialize(v) for v in spec]
        if isinstance(spec, tuple):
            return tuple(self.materialize(v) for v in spec)
        if isinstance(spec, dict):
            return {k: self.materialize(v) for k, v in spec.items()}
        if isinstance(spec, Tensor):
            import torch

            t = torch.from_numpy(np.array(spec.array, copy=True))
            if spec.dtype is not None:
                t = t.to(getattr(torch, spec.dtype))
            if spec.parameter:
                return torch.nn.Parameter(t, requires_grad=True)
            if spec.requires_grad:
                t.requires_grad_(True)
            return t
        if isinstance(spec, GradFn):
            return _GradFn(self, spec.grads, spec.tensor)
        if isinstance(spec, Recorder):
            return _Recorder(self, spec.returns)
        if isinstance(spec, Closure):
            value = spec.value
            return lambda: self.materialize(value)
        if isinstance(spec, LinearLoss):
            return _linear_loss([self.resolve(r) for r in spec.params], [g.copy() for g in spec.grads])
        return spec

    # -- objects -> plain trees ------------------------------------------------------------------

    def snapshot_safe(self, x: Any) -> Any:
        """A snapshot that never raises (for recorders)."""
        try:
            return self.snapshot(x, SNAP_DEPTH)
        except Exception as e:
            return Opaque(type(x).__name__, f"could not be read: {type(e).__name__}")

    def _array(self, a: np.ndarray) -> Any:
        if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
            return Opaque("ndarray", f"dtype {a.dtype}")
        self._snap_bytes += a.nbytes
        if self._snap_bytes > self.max_reply:
            raise _TooBig()
        return np.array(a, copy=True)

    def snapshot(self, x: Any, depth: int = SNAP_DEPTH) -> Any:
        """``x`` as plain data: numeric arrays, numbers, strings, containers, ``Obj``, ``Opaque``."""
        if x is None or isinstance(x, (bool, int, float)):
            return x
        if isinstance(x, str):
            return x[:MAX_STR]
        if isinstance(x, (Obj, Opaque)):  # already a snapshot (what a recorder kept)
            return x
        if isinstance(x, np.ndarray):
            return self._array(x)
        if isinstance(x, np.generic):
            if x.dtype.kind == "b":
                return bool(x)
            if x.dtype.kind in "iu":
                return int(x)
            if x.dtype.kind == "f":
                return float(x)
            return Opaque(type(x).__name__, f"dtype {x.dtype}")
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            if t.is_complex():
                return Opaque("Tensor", f"dtype {t.dtype}")
            if t.dtype == torch.bfloat16:
                t = t.float()
            return self._array(np.array(t.numpy(), copy=True))
        if depth <= 0:
            return Opaque(type(x).__name__, "nested too deeply")
        if isinstance(x, tuple):
            items = tuple(self.snapshot(v, depth - 1) for v in x[:MAX_ITEMS])
            if hasattr(x, "_fields") and hasattr(x, "_asdict"):
                return Obj(_type_name(x), {str(k): v for k, v in zip(x._fields, items, strict=False)}, items)
            return items
        if isinstance(x, list):
            return [self.snapshot(v, depth - 1) for v in x[:MAX_ITEMS]]
        if isinstance(x, Mapping):
            out: dict[Any, Any] = {}
            for i, (k, v) in enumerate(list(x.items())[:MAX_ITEMS]):
                pk = _plain_key(k)
                out[pk if pk is not None or k is None else Opaque(_type_name(k), f"#{i}")] = self.snapshot(
                    v, depth - 1
                )
            return out
        if isinstance(x, (_GradFn, _Recorder)):
            return Obj(type(x).__name__, {"calls": list(x.calls)})
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return Obj(
                _type_name(x),
                {f.name: self.snapshot(getattr(x, f.name, None), depth - 1) for f in dataclasses.fields(x)},
            )
        if inspect.isroutine(x) or inspect.isclass(x) or inspect.ismodule(x):
            return Opaque(_type_name(x), getattr(x, "__qualname__", getattr(x, "__name__", ""))[:200])
        attrs = getattr(x, "__dict__", None)
        if isinstance(attrs, dict):
            return Obj(
                _type_name(x),
                {
                    str(k): self.snapshot(v, depth - 1)
                    for k, v in list(attrs.items())[:MAX_ITEMS]
                    if isinstance(k, str) and not k.startswith("__")
                },
            )
        return Opaque(_type_name(x))


def _linear_loss(params: list[Any], grads: list[np.ndarray]) -> Any:
    """torch's ``step(closure)`` closure: recompute ``Σ (g·p).sum()`` and back-propagate (``.grad`` = g)."""
    import torch

    def closure() -> Any:
        with torch.enable_grad():
            loss = None
            for p, g in zip(params, grads, strict=True):
                p.grad = None
                term = (torch.from_numpy(g.copy()).to(p.dtype) * p).sum()
                loss = term if loss is None else loss + term
            if loss is not None:
                loss.backward()
        return None if loss is None else loss.detach()

    return closure


def _type_name(x: Any) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}"[:200]


def _reply(results: list[Any], printed: int, head: str, fail: dict[str, Any] | None) -> dict[str, Any]:
    return {"results": results, "printed": printed, "head": head[:HEAD_CHARS], "fail": fail}


def _warm_up_torch() -> None:
    """Construct one torch optimizer: the first construction imports torch internals (seconds),
    which must not count against the ``--timeout`` of the target's first call."""
    import torch

    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


# ---------------------------------------------------------------------------------------------
# Loading and describing the target
# ---------------------------------------------------------------------------------------------


def load_object(spec: Mapping[str, Any], sys_path: list[str]) -> Any:
    """Import the target named by ``spec`` (``{"kind": "file"|"module", "location", "name", "text"}``)."""
    for entry in reversed([str(e) for e in sys_path]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    kind, location, name = str(spec["kind"]), str(spec["location"]), str(spec["name"])
    if kind == "file":
        path = Path(location)
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
        module = importlib.import_module(location)
    if not name:
        return _only_candidate(
            module, location if kind == "module" else Path(location).name, str(spec["text"])
        )
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            where = location if kind == "module" else Path(location).name
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise AttributeError(f"{where} has no attribute {part!r} (callables there: {public[:12]})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec.get('text', name)} is a {type(obj).__name__}, not a function or class")
    return obj


# Which callables of a file look like an update rule (``path/to/file.py`` without ``:NAME``). The
# child cannot import optcheck's naming module, so it keeps this short list; the parent binds the
# target it finds by the full tables, and refuses with one line when that fails.
_GRAD_WORDS = (
    "grad",
    "gradient",
    "gradients",
    "grads",
    "dw",
    "dx",
    "dp",
    "dtheta",
    "dparams",
    "dvar",
    "g",
    "layer",
)
_OPT_WORDS = (
    "adam",
    "sgd",
    "momentum",
    "rmsprop",
    "adagrad",
    "adadelta",
    "nesterov",
    "optim",
    "lion",
    "nadam",
)


def _arg_names(fn: Any, skip_self: bool) -> list[str]:
    try:
        names = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return []
    return names[1:] if skip_self and names and names[0] in ("self", "cls") else names


def _grad_like(names: list[str]) -> bool:
    low = [n.lower() for n in names]
    if any(n in _GRAD_WORDS or n.startswith("grad") or n.endswith("_grad") for n in low):
        return True
    return any(("d" + n) in names for n in names)


def looks_like_update(obj: Any) -> bool:
    """Whether a function or class found in a file looks like an update rule or an optimizer."""
    if isinstance(obj, type):
        torch = sys.modules.get("torch")
        if torch is not None and issubclass(obj, torch.optim.Optimizer):
            return True
        return any(
            not k.startswith("_") and inspect.isfunction(v) and _grad_like(_arg_names(v, True))
            for k, v in vars(obj).items()
        )
    if not inspect.isfunction(obj):
        return False
    if _grad_like(_arg_names(obj, False)):
        return True
    qual = obj.__name__.lower()
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return False
    return any(w in qual for w in _OPT_WORDS) and all(p.default is not p.empty for p in params)


def _only_candidate(module: Any, where: str, text: str) -> Any:
    cands = [
        (n, o)
        for n, o in vars(module).items()
        if not n.startswith("_")
        and getattr(o, "__module__", None) == module.__name__
        and looks_like_update(o)
    ]
    if len(cands) == 1:
        return cands[0][1]
    if not cands:
        public = sorted(n for n, o in vars(module).items() if not n.startswith("_") and callable(o))
        raise AttributeError(
            f"{where} has no function or class that takes gradients (callables there: {public[:12]}); "
            f"name the target as {text}:NAME"
        )
    names = [n for n, _ in cands]
    raise AttributeError(f"{where} has {len(names)} candidate targets {names}; name one as {text}:{names[0]}")


def _literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, tuple):
        return all(_literal(v) for v in value)
    return False


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    if isinstance(a, str):
        return a[:200]
    try:
        return inspect.formatannotation(a)[:200]
    except Exception:
        return ""


def _params_of(fn: Any, skip_self: bool) -> list[dict[str, Any]]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [
            {
                "name": "args",
                "kind": "VAR_POSITIONAL",
                "has_default": False,
                "default": None,
                "default_repr": "",
                "annotation": "",
            },
            {
                "name": "kwargs",
                "kind": "VAR_KEYWORD",
                "has_default": False,
                "default": None,
                "default_repr": "",
                "annotation": "",
            },
        ]
    out = []
    for i, p in enumerate(sig.parameters.values()):
        if skip_self and i == 0 and p.name in ("self", "cls"):
            continue
        has_default = p.default is not inspect.Parameter.empty
        try:
            default_repr = repr(p.default)[:200] if has_default else ""
        except Exception:
            default_repr = "<default>"
        out.append(
            {
                "name": p.name,
                "kind": p.kind.name,
                "has_default": has_default,
                "default": p.default if has_default and _literal(p.default) else None,
                "default_repr": default_repr,
                "annotation": _annotation(p.annotation),
            }
        )
    return out


def _mro_dict(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for base in reversed(cls.__mro__[:-1]):
        out.update(vars(base))
    return out


def describe(obj: Any, spec_text: str = "") -> dict[str, Any]:
    """A plain description of a function, class, method or object (its signatures, its methods)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    module = getattr(obj, "__module__", "") or ""
    file = getattr(sys.modules.get(module), "__file__", None)
    base: dict[str, Any] = {
        "spec": spec_text,
        "name": str(name),
        "module": str(module),
        "file": str(file) if file else None,
        "is_torch_optimizer": False,
        "step_params": None,
        "methods": {},
    }
    if isinstance(obj, type):
        torch = sys.modules.get("torch")
        base["is_torch_optimizer"] = bool(torch is not None and issubclass(obj, torch.optim.Optimizer))
        d = _mro_dict(obj)
        base["kind"] = "class"
        base["params"] = _params_of(d["__init__"], skip_self=True) if "__init__" in d else []
        step = getattr(obj, "step", None)
        base["step_params"] = _params_of(step, skip_self=True) if callable(step) else None
        base["methods"] = {
            k: _params_of(v, skip_self=True)
            for k, v in d.items()
            if not k.startswith("_") and inspect.isfunction(v)
        }
        return base
    if inspect.ismethod(obj):
        base["kind"] = "method"
    elif inspect.isroutine(obj):
        base["kind"] = "function"
    else:
        base["kind"] = "object"
        base["name"] = type(obj).__qualname__
    base["params"] = _params_of(obj, skip_self=False)
    return base


# ---------------------------------------------------------------------------------------------
# Process set-up: limits, parent death, the lifeline
# ---------------------------------------------------------------------------------------------


def _cpu_limit(seconds: float) -> None:
    try:
        import resource

        used = resource.getrusage(resource.RUSAGE_SELF)
        total = used.ru_utime + used.ru_stime
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(total + seconds) + 1
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass


def _set_limits(config: Mapping[str, Any]) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return

    def lower(which: int, value: Any) -> None:
        if value is None:
            return
        value = int(value)
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))

    lower(resource.RLIMIT_AS, config.get("max_memory"))
    lower(resource.RLIMIT_FSIZE, config.get("max_file_size"))
    lower(resource.RLIMIT_NOFILE, config.get("max_open_files"))
    procs = config.get("max_procs")
    if procs is not None and hasattr(resource, "RLIMIT_NPROC"):
        lower(resource.RLIMIT_NPROC, _user_tasks() + int(procs))
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises OSError instead


def _user_tasks() -> int:
    """Tasks (processes and threads) of this user: ``RLIMIT_NPROC`` counts them all."""
    uid = os.getuid()
    n = 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        n += len(os.listdir(f"/proc/{entry.name}/task"))
    except OSError:
        return 4096
    return n


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the parent dies (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(0)


def kill_marked(token: str, *, skip: int | None = None) -> int:
    """SIGKILL every process of this user whose environment carries ``OPTCHECK_AUDIT_TOKEN=token``."""
    if not token or not os.path.isdir("/proc"):
        return 0
    needle = f"OPTCHECK_AUDIT_TOKEN={token}".encode()
    uid = os.getuid()
    me = os.getpid()
    killed = 0
    for _ in range(3):  # a process that forks while we scan is caught by the next pass
        found = 0
        try:
            entries = list(os.scandir("/proc"))
        except OSError:
            return killed
        for entry in entries:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in (me, skip):
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if needle in env.split(b"\0"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    found += 1
        killed += found
        if not found:
            break
    return killed


def _start_reaper(lifeline: int, token: str) -> None:
    """Fork a process that waits for the audit to close ``lifeline`` (or die), then kills this
    process group and every process carrying the token."""
    pid = os.fork()
    if pid != 0:
        os.close(lifeline)
        return
    try:  # the reaper
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for fd in range(3, 256):
            if fd != lifeline:
                with contextlib.suppress(OSError):
                    os.close(fd)
        while True:
            try:
                if not os.read(lifeline, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        kill_marked(token)
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(0), signal.SIGKILL)
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    """Serve requests on the file descriptors given in ``argv`` until ``quit`` or end of input."""
    fd_in, fd_out = int(argv[1]), int(argv[2])
    config = json.loads(argv[3])
    lifeline = config.get("lifeline")
    if isinstance(lifeline, int) and hasattr(os, "fork"):
        _start_reaper(lifeline, str(config.get("token", "")))
    _die_with_parent(int(config.get("parent", os.getppid())))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in (fd_in, fd_out):
        os.set_inheritable(fd, False)
    _set_limits(config)
    max_reply = int(config.get("max_reply", 64 * 2**20))
    ex = Executor(max_reply=max_reply, cpu_per_call=config.get("max_cpu"))
    while True:
        try:
            frame = _wire.read_frame(fd_in)
            msg = _wire.decode(frame, specs=True)
        except (EOFError, OSError):
            return 0
        if isinstance(msg, dict) and msg.get("op") == "quit":
            return 0
        reply = ex.request(msg)
        try:
            data = _wire.encode(reply, max_bytes=max_reply)
        except (OverflowError, TypeError, ValueError) as e:
            fail = {"id": "bad-return", "message": f"returned data that cannot be sent back ({e})", "at": 0}
            data = _wire.encode(_reply([], reply.get("printed", 0), "", fail))
        try:
            _wire.write_frame(fd_out, data)
        except OSError:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
