"""The child process of the audit: imports the target and calls it, one message at a time.

Started by :class:`~optcheck.audit.targets.ProcessWorker` as
``python -m optcheck.audit._worker READ_FD WRITE_FD``. Messages are tuples:
``("load", spec, sys_path)``, ``("probe_config", plan, w, dw)``, ``("begin", plan, params0)``,
``("step", grads)``, ``("quit",)``. Replies are ``("ok", value)``, ``("raised", type, message,
traceback)``, ``("exited", code)``, ``("bad-return", message)`` or ``("error", message)`` (a
bug in optcheck itself). What the target prints is counted and dropped, never sent back whole.
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["Handler", "main"]


class _Sink(io.TextIOBase):
    """A stdout replacement that counts what is written and keeps the first 2000 characters."""

    def __init__(self) -> None:
        self.count = 0
        self.head: list[str] = []
        self._kept = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        n = len(s)
        self.count += n
        if self._kept < 2000:
            part = s[: 2000 - self._kept]
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


class Handler:
    """Executes the worker messages against one target (used in the child, or in process)."""

    def __init__(self) -> None:
        self.obj: Any = None
        self.spec_text = ""
        self.session: Any = None
        self.forms: tuple[str, str] | None = None
        self.plan: Any = None
        self.params0: Any = None

    def set_target(self, obj: Any, spec_text: str) -> None:
        """Use ``obj`` as the target."""
        self.obj = obj
        self.spec_text = spec_text

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        """Run one message; never raises."""
        from . import adapters

        op = msg[0]
        with _capture() as sink:
            try:
                value = self._dispatch(op, msg)
            except adapters.TargetRaised as e:
                return ("raised", e.type_name, e.message, e.tb)
            except adapters.TargetExited as e:
                return ("exited", e.code)
            except adapters.BadReturn as e:
                return ("bad-return", str(e))
            except BaseException as e:  # an error in optcheck or in loading the target
                if op == "load":
                    if isinstance(e, SystemExit):
                        return ("error", f"the module called sys.exit({e.code!r}) while being imported")
                    return ("error", "".join(traceback.format_exception_only(type(e), e)).strip())
                return ("error", traceback.format_exc())
        if hasattr(value, "printed"):
            value.printed = sink.count
            value.printed_head = "".join(sink.head)
        return ("ok", value)

    def _dispatch(self, op: str, msg: tuple[Any, ...]) -> Any:
        from . import adapters
        from ._styles import note_of
        from .targets import load_target

        if op == "load":
            spec, sys_path = msg[1], msg[2]
            self.set_target(load_target(spec, sys_path), spec.text)
            info = adapters.describe(self.obj, spec.text)
            if info.is_torch_optimizer:
                _warm_up_torch()
            return info
        if op == "describe":
            return adapters.describe(self.obj, self.spec_text)
        if op == "probe_config":
            return adapters.probe_config(self.obj, msg[1], msg[2], msg[3])
        if op == "begin":
            self.plan, self.params0 = msg[1], msg[2]
            self.session = None
            return None
        if op == "step":
            if self.session is None:
                self.session, out = adapters.first_step_with_key_forms(
                    self.obj, self.plan, self.params0, msg[1]
                )
                self.forms = (self.plan.grad_prefix, self.plan.state_prefix)
                out.note = note_of(self.plan)
                return out
            return self.session.step(msg[1])
        raise ValueError(f"unknown message {op!r}")


def _warm_up_torch() -> None:
    """Construct one torch optimizer: the first construction imports torch internals (seconds),
    which must not count against the ``--timeout`` of the target's first call."""
    import torch

    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def main(argv: list[str]) -> int:
    """Serve messages on the file descriptors given in ``argv`` until ``quit`` or end of input."""
    from multiprocessing.connection import Connection

    conn_in = Connection(int(argv[1]), writable=False)
    conn_out = Connection(int(argv[2]), readable=False)
    handler = Handler()
    while True:
        try:
            msg = conn_in.recv()
        except (EOFError, OSError):
            return 0
        if msg[0] == "quit":
            return 0
        reply = handler.handle(msg)
        try:
            conn_out.send(reply)
        except Exception as e:  # an unpicklable value: report it instead
            conn_out.send(("error", f"could not send the reply: {e}"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
