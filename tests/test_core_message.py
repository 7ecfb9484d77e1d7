"""The one message builder (optcheck._core.message): numbers, indices, "n of N entries; first at"."""

from __future__ import annotations

import math

from optcheck._core import message as m


def test_numbers_and_indices() -> None:
    assert [m.fmt_number(x) for x in (None, math.nan, math.inf, -math.inf, 0.0, 1.23456e-5)] == [
        "?",
        "nan",
        "inf",
        "-inf",
        "0",
        "1.23e-05",
    ]
    assert (m.fmt_index((3,)), m.fmt_index((0, 2)), m.fmt_index(())) == ("(3,)", "(0, 2)", "()")


def test_count_and_first() -> None:
    assert m.entries(3, 20) == "3 of 20 entries"
    assert m.entries(3, 256, sampled=True) == "3 of 256 sampled entries"
    assert m.count_first(1, 4, (0, 1), "S=-0.00021") == "1 of 4 entries; first at (0, 1): S=-0.00021"
    assert m.related_text({"g": 0.013, "p": -0.41}, before=True) == " (g=0.013, p=-0.41 before the step)"
    assert m.related_text({}) == ""


def test_the_checkers_use_it() -> None:
    """The invariants and the guard render numbers through this module (one builder)."""
    from optcheck import invariants
    from optcheck.guard import _shadow

    assert invariants.fmt_number is m.fmt_number and invariants.fmt_index is m.fmt_index
    assert _shadow.count_first is m.count_first
