"""Audit a user's own optimizer against a reference rule: ``python -m optcheck audit``.

:func:`run_audit` loads the target in an isolated child process, calls it through the adapter
of its calling convention, checks invariants on every call, compares it step by step with the
reference rule on Hypothesis-generated trajectories, and names the bug with
:mod:`optcheck.diagnose`. The result is an :class:`AuditReport` of :class:`Finding` records.

This package is loaded lazily (``optcheck.audit``); importing it does not import hypothesis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._common import AuditUsageError as AuditUsageError

__all__ = ["AuditReport", "AuditUsageError", "Finding", "Limits", "run_audit"]

_LAZY = {
    "AuditReport": "optcheck.audit.report",
    "Finding": "optcheck.audit.report",
    "Limits": "optcheck.audit.targets",
    "run_audit": "optcheck.audit.engine",
}

if TYPE_CHECKING:
    from .engine import run_audit as run_audit
    from .report import AuditReport as AuditReport
    from .report import Finding as Finding
    from .targets import Limits as Limits


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'optcheck.audit' has no attribute {name!r}")
