"""Diagnosis: name the bug, not just the mismatch.

Most bugs in hand-written optimizers belong to a small set of known patterns.
Each is built here as a *mutant* of a reference rule (a replaced sub-expression,
an ignored setting, a state not carried over; see :data:`CATALOG`), and known
conventions that are not bugs likewise (:data:`CONVENTIONS`). When the audit
finds that a target differs from the reference, :func:`explain` replays the
conventions, the mutants, hyperparameter fits and pairs of mutants on the same
inputs and reports those that reproduce the target's outputs within the
tolerance, with the corrected equation::

    from optcheck.diagnose import CATALOG, explain
    expl = explain(trajectories)          # from the audit
    for d in expl.diagnoses:
        print(d.id, d.fix)

:func:`identify` finds which rule a target implements (``--rule auto``);
:func:`plot_divergence` draws where it parts from the reference (``--plot``).
"""

from __future__ import annotations

from ._catalog import CATALOG as CATALOG
from ._catalog import CONVENTIONS as CONVENTIONS
from ._catalog import Bug as Bug
from ._catalog import Convention as Convention
from ._catalog import catalog_markdown as catalog_markdown
from ._mutants import StatefulMutant as StatefulMutant
from ._mutants import Variant as Variant
from ._plot import plot_divergence as plot_divergence
from ._search import ConventionMatch as ConventionMatch
from ._search import Diagnosis as Diagnosis
from ._search import Evidence as Evidence
from ._search import Explanation as Explanation
from ._search import Identification as Identification
from ._search import explain as explain
from ._search import identify as identify

__all__ = [
    "CATALOG",
    "CONVENTIONS",
    "Bug",
    "Convention",
    "ConventionMatch",
    "Diagnosis",
    "Evidence",
    "Explanation",
    "Identification",
    "StatefulMutant",
    "Variant",
    "catalog_markdown",
    "explain",
    "identify",
    "plot_divergence",
]
