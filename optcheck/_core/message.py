"""The one builder of the numbers in optcheck's messages.

Every checker that finds bad entries in an array says so the same way::

    S['dW1'] is negative at step 3: 1 of 4 entries < 0; first at (0, 1): S=-0.00021 (g=0.013, p=-0.41).

:func:`fmt_number` and :func:`fmt_index` write the numbers and the index; :func:`entries`
writes ``"n of N entries"`` (``"sampled entries"`` when only a sample was checked) and
:func:`first_at` writes ``"first at (i, j): <value>"``; :func:`count_first` joins the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["count_first", "entries", "first_at", "fmt_index", "fmt_number", "related_text"]


def fmt_number(x: float | None) -> str:
    """A number for a message: 3 significant digits, ``nan``/``inf``/``-inf`` spelled, ``?`` when unknown."""
    if x is None:
        return "?"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def fmt_index(index: Sequence[int]) -> str:
    """An n-d index as Python writes a tuple: ``(3,)``, ``(0, 2)``; ``()`` for a scalar."""
    if len(index) == 1:
        return f"({index[0]},)"
    return "(" + ", ".join(str(i) for i in index) + ")"


def entries(count: int, size: int | str, *, sampled: bool = False) -> str:
    """``"3 of 20 entries"``, or ``"3 of 256 sampled entries"`` when only a sample was checked."""
    return f"{count} of {size} {'sampled ' if sampled else ''}entries"


def first_at(index: Sequence[int], value: str) -> str:
    """``"first at (0, 1): <value>"``."""
    return f"first at {fmt_index(index)}: {value}"


def count_first(
    count: int, size: int | str, index: Sequence[int], value: str, *, sampled: bool = False
) -> str:
    """``"3 of 20 entries; first at (0, 1): <value>"``: how many entries are bad and the first of them."""
    return f"{entries(count, size, sampled=sampled)}; {first_at(index, value)}"


def related_text(related: Mapping[str, float], *, before: bool = False) -> str:
    """`` (g=0.013, p=-0.41)`` (with ``" before the step"`` when ``before``); empty when nothing is related."""
    if not related:
        return ""
    inner = ", ".join(f"{k}={fmt_number(v)}" for k, v in related.items())
    return f" ({inner}{' before the step' if before else ''})"
